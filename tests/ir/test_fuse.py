"""Elementwise fusion keeps results and removes only what it may."""

from __future__ import annotations

import numpy as np
import pytest
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


def _sgd_step() -> tuple[list[er.Tensor], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    x = er.input("x", (64, 32), "float64")
    w = er.input("w", (32, 48), "float64")
    loss = er.sum(er.tanh(x @ w) ** 2)
    (g,) = er.grad(loss, [w])
    new_w = w - er.var("lr") * g
    feeds = {"x": rng.standard_normal((64, 32)), "w": rng.standard_normal((32, 48)), "lr": 0.1}
    return [loss, new_w], feeds


def test_an_update_after_a_gradient_contraction_becomes_one_init_einsum() -> None:
    outs, feeds = _sgd_step()
    fused = fuse_elementwise(er.build_graph(outs))
    (update,) = [n for n in fused.nodes if n.op == "einsum" and n.einsum.init]
    assert fused.outputs[1] == update.id and fused[update.inputs[0]].name == "w"
    assert "init=x0" in str(update.einsum) and "$lr" in str(update.einsum.join)
    want = er.evaluate(outs, feeds)
    for got in (interpret(fused, feeds), er.compile(outs).run(feeds)):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # the aggregated label split over devices: only the first block adds w
    for devices in (er.cpu(2), er.cpu(3, memory="64KiB")):
        prog = er.compile(outs, devices=devices, partitioner="data-parallel")
        applies = [t for t in prog.plan.tasks.tasks if t.kind == "apply" and t.op.init]
        assert len(applies) >= 1
        for a, b in zip(prog.run(feeds), want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_updates_are_not_folded_when_the_gradient_is_read_elsewhere() -> None:
    outs, _ = _sgd_step()
    g = outs[1].node.inputs[1]  # lr * grad
    kept = fuse_elementwise(er.build_graph([*outs, er.Tensor(g.inputs[0])]))
    assert not any(n.op == "einsum" and n.einsum.init for n in kept.nodes)


@pytest.mark.parametrize("n", [8, 96])  # numpy's and torch's GEMM paths
def test_init_contraction_kernel_accumulates_into_its_init(n: int) -> None:
    from einrel import kernels
    from einrel.ir import scalar as S
    from einrel.ir.einsum import Einsum

    rng = np.random.default_rng(1)
    a, b, w = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(3))
    sizes = (("i", n), ("k", n), ("j", n))
    join = S.mul(S.mul(S.var("s"), S.hole(1)), S.hole(2))
    op = Einsum(("ik", "ij", "jk"), "ik", sizes, join, "sum", init=True)
    want = w + 0.5 * (a @ b)
    got = kernels.einsum(op, [w, a, b], {"s": 0.5}, "float32")
    buf = np.full((n, n), np.nan, np.float32)
    assert kernels.einsum(op, [w, a, b], {"s": 0.5}, "float32", out=buf) is buf
    np.testing.assert_array_equal(buf, got)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
