"""The chunked rule's reductions onto kept keys, against numpy's unbuffered `ufunc.at`: sums
add each chunk's rows in tuple order, a max reduces runs of equal keys in key order; both over
several chunks and two kept keys (a flat key), keys without tuples at the identity."""

from __future__ import annotations

import numpy as np
import pytest

import einrel as er
from einrel.kernels import sparse


@pytest.mark.parametrize("agg", ["sum", "max"])
def test_a_join_reduced_onto_two_kept_keys_over_several_chunks(
    agg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sparse, "CHUNK_ELEMENTS", 16)  # 4 tuples of 4 values a chunk
    rng = np.random.default_rng(0)
    b, n, m, d = 40, 5, 3, 4
    t = er.relation("T", keys={"t": b, "u": n, "v": m}, nnz=b, dtype="float64")
    g = er.input("G", (b, d), "float64")
    y = er.einsum("tuv,td->uvd", t, g, agg=agg)
    idx = np.stack([rng.permutation(b), rng.integers(0, n, b), rng.integers(0, m, b)])
    feeds = {"T": er.coo(idx, rng.standard_normal(b)), "G": rng.standard_normal((b, d))}
    want = np.full((n, m, d), 0.0 if agg == "sum" else -np.inf)
    ufunc = np.add if agg == "sum" else np.maximum
    ufunc.at(want, (idx[1], idx[2]), feeds["T"].values[:, None] * feeds["G"][idx[0]])
    np.testing.assert_allclose(er.evaluate(y, feeds), want, rtol=1e-13, atol=1e-13)
    prog = er.compile(y, devices=er.cpu(2), progress=False)
    np.testing.assert_allclose(prog(feeds), want, rtol=1e-13, atol=1e-13)
    prog.close()
