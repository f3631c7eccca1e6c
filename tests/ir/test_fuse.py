"""Elementwise fusion keeps results and removes only what it may."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import einrel as er
from einrel.frontend.reference import interpret
from einrel.ir.fuse import fuse_elementwise

UNARY = [er.relu, er.exp, er.tanh, lambda t: t * 0.5 + 1.0, lambda t: -t, er.sigmoid]


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(st.tuples(st.integers(0, len(UNARY) - 1), st.integers(0, 3)), max_size=8),
    seed=st.integers(0, 1000),
)
def test_random_chains_keep_results(ops: list[tuple[int, int]], seed: int) -> None:
    x = er.input("x", (3, 4), "float64")
    w = er.input("w", (4, 5), "float64")
    ts = [x]
    for u, kind in ops:
        t = UNARY[u](ts[-1])
        if kind == 1 and ts[len(ts) // 2].shape == t.shape:
            t = t + ts[len(ts) // 2]  # fan-out: the older tensor now has two consumers
        elif kind == 2 and t.shape == (3, 4):
            t = er.relu(t) @ w  # elementwise feeding a contraction
        elif kind == 3:
            t = t.sum(axis=-1) if t.ndim == 2 else t
        ts.append(t)
    outs = [ts[-1], ts[len(ts) // 2]]
    graph = er.build_graph(outs)
    fused = fuse_elementwise(graph)
    rng = np.random.default_rng(seed)
    feeds = {n.name: rng.standard_normal(n.shape) for n in graph.inputs}
    with np.errstate(all="ignore"):  # chains of exp overflow: inf and NaN must then agree too
        want, got = interpret(graph, feeds), interpret(fused, feeds)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13)
    assert len(fused) <= len(graph)


def test_fuses_chain_and_keeps_contraction_blas() -> None:
    x = er.input("x", (8, 16), "float64")
    w = er.input("w", (16, 4), "float64")
    y = er.exp(er.relu(x) * 2.0) @ w
    graph = er.build_graph([y])
    fused = fuse_elementwise(graph)
    assert [n.op for n in fused.nodes] == ["input", "input", "einsum"]
    assert fused[2].einsum.agg == "sum"
    # the folded join still factors per input, so the block kernel stays one GEMM
    x2 = er.input("a", (8, 16), "float64")
    z = (x2 + x2 * 2.0) @ w  # a two-input elementwise producer would break the GEMM: kept
    assert len(fuse_elementwise(er.build_graph([z]))) <= len(er.build_graph([z]))


def test_outputs_and_shared_producers_are_kept() -> None:
    x = er.input("x", (4,), "float64")
    a = er.relu(x)
    b = er.exp(a)
    c = er.exp(a) * 3.0
    graph = er.build_graph([a, b, c])
    fused = fuse_elementwise(graph)
    assert fused[fused.outputs[0]].einsum.join == graph[graph.outputs[0]].einsum.join
    feeds = {"x": np.linspace(-1, 1, 4)}
    for r, f in zip(interpret(graph, feeds), interpret(fused, feeds)):
        np.testing.assert_allclose(f, r, rtol=1e-14)


def test_low_precision_is_not_fused() -> None:
    x = er.input("x", (4,), "float16")
    graph = er.build_graph([er.exp(er.relu(x))])
    assert len(fuse_elementwise(graph)) == len(graph)
