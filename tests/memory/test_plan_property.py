"""The memory graph's correctness property on random graphs, partitions, placements and budgets:
every linear extension runs without two live blocks overlapping, within the budget, and computes
what the reference interpreter computes."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from einrel.frontend.reference import interpret
from einrel.memory import (
    STRATEGIES,
    MemGraph,
    min_budget,
    plan_memory,
    random_linear_extension,
    run_memory,
)
from einrel.taskgraph.interpret import interpret_tasks
from helpers import feeds_for, random_budgets, random_graph, random_placed


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
