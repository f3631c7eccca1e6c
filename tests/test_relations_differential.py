"""Differential tests over random relation programs: the reference interpreter equals torch
autograd on the dense equivalent with absent entries masked (loss and gradients, the
relation's included), and compiled programs on random device counts and placers equal the
reference, relation outputs in the source's tuple order."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import einrel as er
from einrel.memory import interpret_memory, min_budget, plan_memory, random_linear_extension
from einrel.taskgraph.interpret import interpret_tasks
from einrel.testing.relations import RelCase, build, relation_cases, torch_loss_and_grads

# float64 throughout: the two sides sum in different orders, nothing else differs
RTOL, ATOL = 1e-10, 1e-12
PLACERS = ("critical-path", "round-robin", "heft", "random")
PARTITIONERS = ("eindecomp", "data-parallel", "model-parallel", "largest-dim", "none")


def values(x: object) -> np.ndarray:
    return x.values if isinstance(x, er.Coo) else np.asarray(x)


def another_structure(feeds: dict, seed: int) -> dict:
    """The feeds with a different structure of R within its nnz: a random part of its
    tuples, in a new order (negative sampling feeds a compiled program like this)."""
    r = feeds["R"]
    rng = np.random.default_rng(seed)
    keep = rng.permutation(r.nnz)[: rng.integers(0, r.nnz + 1)]
    return {**feeds, "R": er.coo(np.asarray(r.indices)[:, keep], r.values[keep], shape=r.shape)}


def run_both(prog: Any, outs: list, b: Any, seed: int) -> None:
    """Run twice on the case's feeds, then on another structure: each equals the reference."""
    want = er.evaluate(outs, b.feeds, strict=False)
    same(prog(b.feeds, strict=False), want)
    same(prog(b.feeds, strict=False), want)
    other = another_structure(b.feeds, seed)
    same(prog(other, strict=False), er.evaluate(outs, other, strict=False))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(relation_cases())
def test_reference_gradients_equal_torch_autograd_on_the_masked_dense(case: RelCase) -> None:
    b = build(case)
    grads = er.grad(b.loss, b.targets)
    got = er.evaluate([b.loss, *grads], b.feeds, strict=False)
    loss, want = torch_loss_and_grads(case, b.feeds)
    np.testing.assert_allclose(got[0], loss, rtol=RTOL, atol=ATOL)
    assert isinstance(got[1], er.Coo) and np.array_equal(got[1].indices, case.indices)
    for g, w in zip(got[1:], want):
        np.testing.assert_allclose(values(g), w, rtol=RTOL, atol=ATOL)


def same(got: list, want: list) -> None:
    for a, w in zip(got, want, strict=True):
        assert type(a) is type(w)
        if isinstance(w, er.Coo):
            assert np.array_equal(a.indices, w.indices) and a.shape == w.shape
        np.testing.assert_allclose(values(a), values(w), rtol=RTOL, atol=ATOL)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    relation_cases(),
    st.integers(1, 4),
    st.sampled_from(PARTITIONERS),
    st.sampled_from(PLACERS),
    st.booleans(),
    st.booleans(),
)
def test_compiled_relation_programs_equal_the_reference(
    case: RelCase, ndev: int, partitioner: str, placer: str, fuse: bool, relabel: bool
) -> None:
    """Blocks (relations cut by key ranges, co-partitioned with the dense operands) on every
    partitioner, keys relabeled or not: the block interpreter, and the engine run twice and
    on another structure, equal the reference."""
    b = build(case)
    outs = [*b.outputs, *er.grad(b.loss, b.targets)]
    want = er.evaluate(outs, b.feeds, strict=False)
    opts = {"partitioner": partitioner, "placer": placer, "fuse": fuse, "relabel": relabel}
    try:
        prog = er.compile(outs, devices=er.cpu(ndev), progress=False, **opts)
    except er.CompileError as e:
        assert relabel and "relabel" in str(e)  # a key that positions read: refused, clearly
        return
    try:
        if not relabel:  # the block interpreter reads the feeds in their own labels
            same(interpret_tasks(prog.plan.tasks, b.feeds, strict=False), want)
        run_both(prog, outs, b, case.seed)
    finally:
        prog.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    relation_cases(),
    st.integers(1, 3),
    st.sampled_from(PARTITIONERS),
    st.floats(0.3, 1.2),
    st.integers(0, 2**16),
    st.booleans(),
)
def test_memory_planned_relation_programs_equal_the_reference(
    case: RelCase, ndev: int, partitioner: str, fraction: float, seed: int, relabel: bool
) -> None:
    """Relation blocks under a budget from below the unrefined plan's smallest (the compiler
    refines) to above its unconstrained peak: the memory interpreter on a random order of the
    memory graph and the memory engine, run twice, equal the reference; the peak stays under
    the budget."""
    b = build(case)
    outs = [*b.outputs, *er.grad(b.loss, b.targets)]
    want = er.evaluate(outs, b.feeds, strict=False)
    free = er.compile(outs, devices=er.cpu(ndev), partitioner=partitioner, progress=False)
    tg = free.plan.tasks
    low, high = max(min_budget(tg)), max(plan_memory(tg, None).stats.peak_bytes)
    budget = max(
        1,
        int(low + fraction * (max(high, low) - low))
        if fraction >= 0.5
        else int(low * (0.5 + fraction)),
    )
    free.close()
    try:
        prog = er.compile(
            outs,
            devices=er.cpu(ndev, memory=budget),
            partitioner=partitioner,
            progress=False,
            relabel=relabel,
        )
    except er.MemoryBudgetError:
        return  # a budget below what the finest split needs is refused, clearly
    except er.CompileError as e:
        assert relabel and "relabel" in str(e)
        return
    try:
        mg = prog.plan.memgraph
        order = random_linear_extension(mg, random.Random(seed))
        if not relabel:
            same(interpret_memory(mg, b.feeds, order, strict=False), want)
        run_both(prog, outs, b, seed)
        assert max(prog.report.peak_bytes.values()) <= budget
    finally:
        prog.close()
