"""The memory graph's correctness property on random graphs, partitions, placements and budgets:
every linear extension runs without two live blocks overlapping, within the budget, and computes
what the reference interpreter computes."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import einrel as er
from einrel.decompose.partition import Partition
from einrel.frontend.reference import interpret
from einrel.ir.graph import Graph
from einrel.memory import (
    STRATEGIES,
    MemGraph,
    min_budget,
    plan_memory,
    random_linear_extension,
    run_memory,
)
from einrel.taskgraph.build import build_tasks
from einrel.taskgraph.interpret import interpret_tasks
from einrel.taskgraph.ir import TaskGraph
from einrel.taskgraph.place import place_tasks

DIMS = (2, 3, 4, 5)


def random_graph(r: random.Random) -> Graph:
    """A small float64 graph composed of einsum, matmul, relu, softmax, sum, concat, slice."""
    names = iter(f"x{k}" for k in range(100))

    def new(shape: tuple[int, ...]) -> er.Tensor:
        return er.input(next(names), shape, "float64")

    pool = [new((r.choice(DIMS), r.choice(DIMS))) for _ in range(r.randint(1, 2))]
    for _ in range(r.randint(1, 8)):
        a = r.choice(pool)
        same = [t for t in pool if t.shape == a.shape]
        op = r.choice(["matmul", "relu", "softmax", "sum", "concat", "slice", "add", "einsum"])
        if a.ndim == 0:
            y = a * 3.0 + 1.0
        elif op == "matmul" and a.ndim == 2:
            fits = [t for t in pool if t.ndim == 2 and t.shape[0] == a.shape[1]]
            b = r.choice(fits) if fits and r.random() < 0.7 else new((a.shape[1], r.choice(DIMS)))
            y = a @ b
        elif op == "relu":
            y = er.relu(a)
        elif op == "softmax":
            y = er.softmax(a, axis=r.randrange(a.ndim))
        elif op == "sum":
            y = a.sum(r.randrange(a.ndim))
        elif op == "concat":
            ax = r.randrange(a.ndim)
            fits = [
                t
                for t in pool
                if t.ndim == a.ndim
                and all(t.shape[d] == a.shape[d] for d in range(a.ndim) if d != ax)
            ]
            y = er.concat([a, r.choice(fits)], axis=ax)
        elif op == "slice":
            starts, stops = [], []
            for n in a.shape:
                lo = r.randrange(n)
                starts.append(lo)
                stops.append(r.randint(lo + 1, n))
            y = er.slice(a, starts, stops) if tuple(stops) != a.shape or any(starts) else -a
        elif op == "add":
            y = a + r.choice(same)
        elif a.ndim == 2:
            b = r.choice(same)
            y = er.einsum(
                "ij,ij->i", a, b, join=lambda x, z: (x - z) ** 2, agg=r.choice(["max", "sum"])
            )
        else:
            y = er.einsum("i,i->i", a, r.choice(same), join=lambda x, z: x * z + 1.0)
        pool.append(y)
    outs = [pool[-1]]
    extra = r.choice(pool)
    if extra is not outs[0] and r.random() < 0.6:
        outs.append(extra)
    return er.build_graph(outs)


def random_placed(r: random.Random, g: Graph) -> TaskGraph:
    dec = {}
    for n in g.nodes:
        shape = n.einsum.join_shape if n.op == "einsum" else n.shape
        dec[n.id] = Partition.even(shape, [r.randint(1, min(3, k)) for k in shape])
    tg = build_tasks(g, dec)
    ndev = r.randint(1, 3)
    return place_tasks(tg, [r.randrange(ndev) for _ in tg.tasks], ndev)


def random_budgets(r: random.Random, tg: TaskGraph) -> list[int | None]:
    """From the minimum feasible budget up to unlimited, weighted towards tight budgets."""
    low = min_budget(tg)
    high = plan_memory(tg, None).stats.peak_bytes
    out: list[int | None] = []
    for lo, hi in zip(low, high):
        kind = r.choice(["min", "min", "between", "between", "peak", "none"])
        if kind == "min":
            out.append(lo)
        elif kind == "between":
            out.append(r.randint(lo, max(lo, hi)))
        elif kind == "peak":
            out.append(max(lo, hi))
        else:
            out.append(None)
    return out


def feeds_for(r: random.Random, g: Graph) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(r.randrange(2**32))
    return {n.name: rng.standard_normal(n.shape) for n in g.inputs}


def check_run(mg: MemGraph, feeds: dict[str, np.ndarray], order, want) -> None:
    m = run_memory(mg, feeds, order)
    for d, b in enumerate(mg.budgets):
        assert b is None or m.peak[d] <= b
    for got, ref in zip(m.outputs(), want):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)


@settings(max_examples=120, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_every_linear_extension_is_safe_and_correct(seed: int) -> None:
    r = random.Random(seed)
    g = random_graph(r)
    tg = random_placed(r, g)
    feeds = feeds_for(r, g)
    want = interpret(g, feeds)
    for got, ref in zip(interpret_tasks(tg, feeds), want):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)
    mg = plan_memory(tg, random_budgets(r, tg), strategy=r.choice(STRATEGIES))
    check_run(mg, feeds, None, want)
    for _ in range(8):
        check_run(mg, feeds, random_linear_extension(mg, r), want)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_every_budget_gives_the_reference_result(seed: int) -> None:
    r = random.Random(seed)
    g = random_graph(r)
    tg = random_placed(r, g)
    feeds = feeds_for(r, g)
    want = interpret(g, feeds)
    low = np.array(min_budget(tg))
    high = np.maximum(np.array(plan_memory(tg, None).stats.peak_bytes), low)
    for frac in (0.0, 0.1, 0.3, 0.6, 1.0):
        budget = [int(x) for x in low + np.floor(frac * (high - low))]
        mg = plan_memory(tg, budget)
        assert all(p <= b for p, b in zip(mg.stats.peak_bytes, budget))
        check_run(mg, feeds, random_linear_extension(mg, r), want)
