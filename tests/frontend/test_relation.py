"""Sparse relations: declarations, feeds (er.coo, scipy.sparse, torch sparse) and their
errors, and the reference semantics of einsums over relations against dense numpy with absent
entries masked (the identity of the aggregation where a key has no tuples)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch

import einrel as er

N, M, D = 7, 5, 3


def edges(rng: np.random.Generator, shape: tuple[int, ...], nnz: int) -> np.ndarray:
    flat = rng.choice(int(np.prod(shape)), nnz, replace=False)
    return np.stack(np.unravel_index(flat, shape))


def dense(
    idx: np.ndarray, vals: np.ndarray, shape: tuple[int, ...], fill: float = 0.0
) -> np.ndarray:
    out = np.full(shape + vals.shape[1:], fill)
    out[tuple(idx)] = vals
    return out


@pytest.fixture
def graph() -> tuple[er.Tensor, er.Tensor, dict]:
    rng = np.random.default_rng(1)
    idx = edges(rng, (N, M), 12)
    A = er.relation("A", keys={"u": N, "v": M}, nnz=16, dtype="float64")
    H = er.input("H", (N, D), "float64")
    feeds = {"A": er.coo(idx, rng.standard_normal(12)), "H": rng.standard_normal((N, D))}
    return A, H, feeds


def test_einsums_over_a_relation_match_masked_dense_numpy(graph: tuple) -> None:
    A, H, feeds = graph
    G = er.input("G", (M, D), "float64")
    feeds["G"] = np.random.default_rng(2).standard_normal((M, D))
    coo = feeds["A"]
    mask = dense(coo.indices, np.ones(coo.nnz), (N, M)) > 0
    Ad = dense(coo.indices, coo.values, (N, M))
    Z = er.einsum("uv,ud->vd", A, H)  # SpMM: dense
    S = er.einsum("uv,ud,vd->uv", A, H, G)  # SDDMM: a relation on A's support
    mx = er.einsum("uv->u", S, agg="max")  # rows without tuples get -inf
    pr = er.einsum("uv->v", S, agg="prod")  # and 1 for a product
    P = er.einsum("uv,u->uv", S, mx, join=lambda s, m: er.exp(s - m))
    T = er.einsum("uv->vu", S)  # keys permuted: same tuples, index rows swapped
    z, s, m_, p_, pp, t = er.evaluate([Z, S, mx, pr, P, T], feeds)
    np.testing.assert_allclose(z, Ad.T @ feeds["H"], rtol=1e-13)
    sd = (feeds["H"] @ feeds["G"].T) * Ad
    assert isinstance(s, er.Coo) and np.array_equal(s.indices, coo.indices)
    np.testing.assert_allclose(s.values, sd[tuple(coo.indices)], rtol=1e-13)
    np.testing.assert_allclose(m_, np.where(mask, sd, -np.inf).max(1), rtol=1e-13)
    np.testing.assert_allclose(p_, np.where(mask, sd, 1.0).prod(0), rtol=1e-12)
    want_p = np.exp(sd - m_[:, None])[tuple(coo.indices)]
    np.testing.assert_allclose(pp.values, want_p, rtol=1e-13)
    assert np.array_equal(t.indices, coo.indices[::-1]) and t.shape == (M, N)
    np.testing.assert_array_equal(t.values, s.values)


def test_value_labels_three_keys_and_empty_relations() -> None:
    rng = np.random.default_rng(3)
    idx = edges(rng, (4, 3, 5), 9)
    R = er.relation("R", keys={"h": 4, "r": 3, "t": 5}, nnz=9, values={"f": 2}, dtype="float64")
    E = er.input("E", (4, 2), "float64")
    vals = rng.standard_normal((9, 2))
    score = er.einsum("hrtf,hf->hrt", R, E)  # a scalar per triple: a relation
    per_t = er.einsum("hrtf,hf->tf", R, E, agg="min")
    E_ = rng.standard_normal((4, 2))
    sc, pt = er.evaluate([score, per_t], {"R": er.coo(idx, vals), "E": E_})
    np.testing.assert_allclose(sc.values, (vals * E_[idx[0]]).sum(1), rtol=1e-13)
    want = np.full((5, 2), np.inf)
    for k in range(9):
        want[idx[2, k]] = np.minimum(want[idx[2, k]], vals[k] * E_[idx[0, k]])
    np.testing.assert_allclose(pt, want, rtol=1e-13)
    empty = er.coo(np.zeros((3, 0), dtype=np.int64), np.zeros((0, 2)))
    sc, pt = er.evaluate([score, per_t], {"R": empty, "E": E_})
    assert sc.nnz == 0 and sc.values.shape == (0,) and np.all(pt == np.inf)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_feeds_from_scipy_and_torch_sparse(graph: tuple) -> None:
    A, H, feeds = graph
    Z = er.einsum("uv,ud->vd", A, H)
    want = er.evaluate(Z, feeds)
    coo = feeds["A"]
    sp = scipy.sparse.coo_matrix((coo.values, tuple(coo.indices)), shape=(N, M))
    t_coo = torch.sparse_coo_tensor(
        torch.from_numpy(coo.indices), torch.from_numpy(coo.values), (N, M), check_invariants=True
    )
    for feed in (sp, sp.tocsr(), t_coo, t_coo.to_sparse_csr()):
        np.testing.assert_allclose(er.evaluate(Z, {**feeds, "A": feed}), want, rtol=1e-13)
    S = er.einsum("uv,ud->uv", A, H)
    out = er.evaluate(S, feeds, output="torch")
    assert out.layout == torch.sparse_coo and tuple(out.shape) == (N, M, D)[:2] + ()
    np.testing.assert_allclose(
        out.to_dense().numpy(), dense(coo.indices, er.evaluate(S, feeds).values, (N, M))
    )


@pytest.mark.parametrize(
    ("feed", "match"),
    [
        (lambda: er.coo([[0, 7], [1, 2]], [1.0, 2.0]), r"key 'u' index 7 is outside \[0, 7\)"),
        (lambda: er.coo([[0, -1], [1, 2]], [1.0, 2.0]), r"key 'u' index -1 is outside"),
        (
            lambda: er.coo(np.array([[0.0, 1.0], [1.0, 2.0]]), [1.0, 2.0]),
            "indices must be integers",
        ),
        (
            lambda: er.coo(np.zeros((2, 17), dtype=int) + np.arange(17) % 5, np.ones(17)),
            "more than the declared nnz=16",
        ),
        (lambda: er.coo([[0, 0], [1, 1]], [1.0, 2.0]), "coalesce=True"),
        (
            lambda: er.coo([[0, 1], [1, 1]], np.ones((2, 2))),
            r"values have shape \(2, 2\), expected \(2,\)",
        ),
        (
            lambda: er.coo([[0, 1], [1, 1]], np.ones(2, dtype=np.float32)),
            "dtype float32, the relation is float64",
        ),
        (
            lambda: er.coo([[0, 1, 2]], [1.0, 2.0, 3.0]),
            "indices have 1 key rows, the relation has 2",
        ),
        (lambda: np.ones((N, M)), "er.coo"),
    ],
)
def test_bad_relation_feeds_are_feed_errors(graph: tuple, feed, match: str) -> None:
    A, H, feeds = graph
    Z = er.einsum("uv,ud->vd", A, H)
    with pytest.raises(er.FeedError, match=match):
        er.evaluate(Z, {**feeds, "A": feed()})


def test_coalesce_sums_repeated_keys_and_cast_converts(graph: tuple) -> None:
    A, H, feeds = graph
    Z = er.einsum("uv,ud->vd", A, H)
    rep = er.coo([[0, 0, 3], [1, 1, 2]], [1.0, 2.0, 5.0], coalesce=True)
    assert rep.nnz == 2 and list(rep.values) == [3.0, 5.0]
    z = er.evaluate(Z, {**feeds, "A": rep})
    np.testing.assert_allclose(z[1], 3.0 * feeds["H"][0])
    f32 = er.coo([[0, 1], [1, 1]], np.ones(2, dtype=np.float32))
    er.evaluate(Z, {**feeds, "A": f32}, cast=True)
    ones = er.coo([[0, 1], [1, 1]])  # no values: 1.0 per tuple, in the relation's dtype
    np.testing.assert_allclose(er.evaluate(Z, {**feeds, "A": ones})[1], feeds["H"][[0, 1]].sum(0))


def test_what_a_relation_cannot_do_is_a_clear_error(graph: tuple) -> None:
    A, H, _ = graph
    B = er.relation("B", keys={"u": N, "v": M}, nnz=4, dtype="float64")
    with pytest.raises(er.SpecError, match="relations on 'A' and 'B'"):
        er.einsum("uv,uv->uv", A, B)
    Q = er.relation("Q", keys={"u": N, "v": N}, nnz=4, dtype="float64")
    with pytest.raises(er.SpecError, match="joined with its own transpose"):
        er.einsum("uv,vu->uv", Q, Q)
    with pytest.raises(er.SpecError, match="key labels come first; write 'uvd'"):
        er.einsum("uv,ud->duv", A, H)
    with pytest.raises(er.SpecError, match="a relation has no reshape"):
        A.reshape((N * M,))
    with pytest.raises(er.EinrelError, match="keys must map key names to sizes"):
        er.relation("X", keys={}, nnz=3)
    with pytest.raises(er.EinrelError, match="size of 'u' must be a positive integer"):
        er.relation("X", keys={"u": 0}, nnz=3)
    with pytest.raises(er.EinrelError, match="expects a relation"):
        er.densify(H)
    x = er.input("A", (2,), "float64")
    with pytest.raises(er.EinrelError, match="both named 'A'"):
        (er.einsum("uv->", A) + x.sum()).graph()


def test_densify_scatters_and_its_gradient_reads_the_tuples(graph: tuple) -> None:
    A, _, feeds = graph
    coo = feeds["A"]
    d = er.densify(A)
    got = er.evaluate(d, feeds, strict=False)
    np.testing.assert_array_equal(got, dense(coo.indices, coo.values, (N, M)))
    W = er.input("W", (N, M), "float64")
    (gA,) = er.grad((d * W).sum(), [A])
    w = np.arange(N * M, dtype=float).reshape(N, M)
    ga = er.evaluate(gA, {**feeds, "W": w}, strict=False)
    assert isinstance(ga, er.Coo)
    np.testing.assert_array_equal(ga.values, w[tuple(coo.indices)])
