"""Workloads: einrel's reference interpreter agrees with each workload's plain-torch twin."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import numpy as np
import pytest

import einrel as er
from einrel.workloads import SIZES, WORKLOADS, Workload, get_workload, max_rel_error, node_kinds

CASES: list[tuple[str, dict[str, Any]]] = [
    ("matmul_chain", {}),
    ("matmul_chain", {"shape": "square"}),
    ("ffnn_train", {"loss": "ce", "with_grads": True}),
    ("ffnn_train", {"loss": "mse", "with_grads": True}),
    ("ffnn_train", {"loss": "ce", "widths": (5, 7, 3)}),
    ("llama_block", {"mode": "inference"}),
    ("llama_block", {"mode": "train", "with_grads": True}),
    ("llama_block", {"mode": "train"}),
]


def _check(wl: Workload, seed: int = 0, tol: float = 1e-8) -> list[np.ndarray]:
    feeds = wl.make_feeds(seed)
    got = er.evaluate(wl.outputs, feeds)
    want = wl.torch_reference(feeds)
    assert len(got) == len(want) == len(wl.outputs) == len(wl.output_names)
    for name, t, a, b in zip(wl.output_names, wl.outputs, got, want):
        assert a.shape == b.shape == t.shape, name
        assert a.dtype == np.float64 and b.dtype == np.float64, name
        err = max_rel_error(a, b)
        assert err <= tol, f"{wl.name} {name}: relative error {err:.2e}"
    return got


@pytest.mark.parametrize(("name", "opts"), CASES, ids=lambda c: str(c))
def test_tiny_float64_matches_torch(name: str, opts: dict[str, Any]) -> None:
    wl = get_workload(name, size="tiny", dtype="float64", **opts)
    assert wl.name == name
    assert wl.flops > 0
    _check(wl)


def test_train_outputs_are_loss_grads_then_new_weights() -> None:
    wl = get_workload("llama_block", "tiny", "float64", mode="train", with_grads=True)
    ws = wl.meta["weights"]
    assert wl.output_names == ["loss", *(f"grad_{k}" for k in ws), *(f"new_{k}" for k in ws)]
    assert wl.graph().variables == ("lr",)
    # lr is a run-time variable: the same graph with another rate gives w - lr*g.
    feeds = wl.make_feeds(3)
    feeds["lr"] = 0.5
    out = dict(zip(wl.output_names, er.evaluate(wl.outputs, feeds)))
    for k in ws:
        np.testing.assert_allclose(out[f"new_{k}"], feeds[k] - 0.5 * out[f"grad_{k}"], rtol=1e-12)
    plain = get_workload("ffnn_train", "tiny", "float64")
    assert plain.output_names == ["loss", "new_w0", "new_w1", "new_w2"]


def test_small_sizes_match_torch() -> None:
    _check(get_workload("matmul_chain", "small", "float64"))
    _check(get_workload("ffnn_train", "small", "float64", with_grads=True))
    _check(get_workload("llama_block", "small", "float64", mode="train", with_grads=True))


def test_float32_is_close_to_torch() -> None:
    wl = get_workload("llama_block", "tiny", "float32", mode="train", with_grads=True)
    feeds = wl.make_feeds(1)
    assert all(v.dtype == np.float32 for k, v in feeds.items() if k != "lr")
    got = er.evaluate(wl.outputs, feeds)
    want = wl.torch_reference(feeds)
    for name, a, b in zip(wl.output_names, got, want):
        assert a.dtype == b.dtype == np.float32
        assert max_rel_error(a, b) < 1e-4, name


def test_feeds_are_deterministic() -> None:
    wl = get_workload("ffnn_train", "tiny", "float64")
    a, b, c = wl.make_feeds(7), wl.make_feeds(7), wl.make_feeds(8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["x"], c["x"])
    assert np.all(a["y"].sum(axis=1) == 1)  # one-hot targets for cross-entropy


def test_7b_llama_graph_builds_lazily() -> None:
    tracemalloc.start()
    inf = get_workload("llama_block", "7b", mode="inference")
    train = get_workload("llama_block", "7b", mode="train", with_grads=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 2**20  # building is lazy: a 7B block's weights alone are gigabytes
    g = inf.graph()
    assert inf.outputs[0].shape == (1, 1000, 4096)
    kinds = node_kinds(g)
    assert kinds["input"] == 10 and kinds["einsum/contraction"] == 9
    assert 25 <= len(g) <= 50
    shapes = {n.name: n.shape for n in g.inputs}
    assert shapes["wq"] == (4096, 32, 128) and shapes["wo"] == (32, 128, 4096)
    assert shapes["w1"] == (4096, 11008) and shapes["w2"] == (11008, 4096)
    # Matmul flops: 4 projections, 3 MLP matmuls, scores and AV (seq 1000, batch 1).
    s, d, f = 1000, 4096, 11008
    matmuls = 2 * s * d * d * 4 + 2 * s * d * f * 3 + 2 * 2 * s * s * d
    assert matmuls <= inf.flops <= 1.01 * matmuls
    tg = train.graph()
    assert 2 * len(g) <= len(tg) <= 150
    assert len(train.outputs) == 1 + 2 * 9
    assert 2.5 * inf.flops <= train.flops <= 3.5 * inf.flops
    assert train.outputs[train.output_names.index("grad_w1")].shape == (4096, 11008)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_size_builds(name: str) -> None:
    for size in SIZES[name]:
        wl = get_workload(name, size)
        assert wl.graph() is not None
        assert wl.flops > 0 and math.isfinite(wl.flops)


def test_presets() -> None:
    bench = get_workload("ffnn_train", "bench")
    assert bench.meta["batch"] == 4096 and bench.meta["widths"] == (1024, 4096, 1024)
    assert bench.meta["loss"] == "mse" and bench.meta["dtype"] == "float32"
    assert bench.outputs[0].dtype == "float32"
    chain = get_workload("matmul_chain", "tiny")
    sh = chain.meta["shapes"]
    s = chain.meta["S"]
    assert sh["A"] == (s, s // 10) and sh["D"] == (s // 10, 10 * s) and sh["E"] == (10 * s, s)
    # D·E dominates: 2·S/10·10S·S, plus two 2·S·S/10·S products and the add.
    assert chain.flops == 2 * s**3 + 2 * 0.2 * s**3 + s * s


def test_bad_arguments() -> None:
    with pytest.raises(er.EinrelError, match="unknown workload"):
        get_workload("resnet")
    with pytest.raises(er.EinrelError, match="unknown size"):
        get_workload("llama_block", "huge")
    with pytest.raises(er.EinrelError, match="mode"):
        get_workload("llama_block", mode="serve")
    with pytest.raises(er.EinrelError, match="loss"):
        get_workload("ffnn_train", loss="hinge")
    with pytest.raises(er.EinrelError, match="dtype"):
        get_workload("matmul_chain", dtype="int8")
