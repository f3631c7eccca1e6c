"""Hand-built cases for the memory planner and the memory interpreter."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

import einrel as er
from einrel.decompose.partition import Partition
from einrel.frontend.reference import interpret
from einrel.ir.graph import Graph
from einrel.memory import (
    Allocator,
    Frontier,
    MemGraph,
    MemorySafetyError,
    aligned,
    interpret_memory,
    min_budget,
    plan_memory,
    random_linear_extension,
    run_memory,
)
from einrel.taskgraph.build import build_tasks
from einrel.taskgraph.ir import TaskGraph
from einrel.taskgraph.place import place_tasks


def placed(g: Graph, parts: int = 1, devices=None, ndev: int = 1) -> TaskGraph:
    dec = {}
    for n in g.nodes:
        shape = n.einsum.join_shape if n.op == "einsum" else n.shape
        dec[n.id] = Partition.even(shape, [min(parts, k) for k in shape])
    tg = build_tasks(g, dec)
    devs = [0] * len(tg) if devices is None else [devices(t) for t in tg.tasks]
    return place_tasks(tg, devs, ndev)


def mlp_graph() -> tuple[Graph, dict[str, np.ndarray]]:
    x = er.input("x", (6, 4), "float64")
    w1 = er.input("w1", (4, 5), "float64")
    w2 = er.input("w2", (5, 3), "float64")
    h = er.relu(x @ w1)
    y = er.softmax(h @ w2, axis=1)
    loss = er.concat([y, y[:2]], axis=0).sum(0)
    rng = np.random.default_rng(0)
    feeds = {
        "x": rng.standard_normal((6, 4)),
        "w1": rng.standard_normal((4, 5)),
        "w2": rng.standard_normal((5, 3)),
    }
    return er.build_graph([loss, h]), feeds


def mlp_placed() -> TaskGraph:
    g, _ = mlp_graph()
    return placed(g, parts=2, devices=lambda t: t.id % 2, ndev=2)


def assert_same(got, want) -> None:
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def input_task(tg: TaskGraph, name: str) -> int:
    (t,) = [t.id for t in tg.tasks if t.kind == "input" and tg.graph[t.node].name == name]
    return t


# --- the allocator ----------------------------------------------------------------------------


def test_allocator_prefers_the_range_freed_earliest() -> None:
    a = Allocator(100)
    assert a.find(100) == 0
    assert a.take(0, 100) == set()
    a.release(0, 30, 5)
    a.release(30, 30, 2)
    a.release(60, 40, 7)
    assert a.find(30) == 30  # freed by node 2, the earliest
    assert a.find(50) == 0  # [0,60) needs nodes 5 and 2; [30,80) would need 7
    assert a.find(50, first_fit=True) == 0
    assert a.find(101) is None
    assert a.take(20, 30) == {5, 2}
    assert a.free == [[0, 20, 5], [50, 60, 2], [60, 100, 7]]


def test_allocator_coalesces_ranges_freed_together() -> None:
    a = Allocator(64)
    a.take(0, 64)
    a.release(32, 16, 3)
    a.release(0, 16, 3)
    a.release(16, 16, 3)
    assert a.free == [[0, 48, 3]]
    a.release(48, 16, 4)
    assert a.free == [[0, 48, 3], [48, 64, 4]]
    assert a.find(64) == 0  # contiguous ranges with different freeing nodes still combine


def test_unbounded_allocator_never_reuses() -> None:
    a = Allocator(None)
    assert a.take(a.find(32), 32) == set()
    a.release(0, 32, 1)
    assert a.find(16) == 32


def test_alignment_rounds_every_region() -> None:
    assert aligned(8) == 16 and aligned(17) == 32 and aligned(1, 64) == 64
    tg = mlp_placed()
    mg = plan_memory(tg, [b * 2 for b in min_budget(tg, 64)], alignment=64)
    for n in mg.nodes:
        pairs = [(n.block, n.region), *zip(n.sources, n.reads)] if n.region else []
        for b, r in pairs:
            assert r.offset % 64 == 0 and r.size % 64 == 0
            assert r.size >= mg.block_bytes(b)
    g, feeds = mlp_graph()
    assert_same(interpret_memory(mg, feeds), interpret(g, feeds))


# --- Belady ----------------------------------------------------------------------------------


def chain_graph() -> tuple[Graph, dict[str, np.ndarray]]:
    """Steps: a, b, p = a+b, c, q = p*c, r = q+a, s = r+b (16-byte blocks)."""
    a, b, c = (er.input(n, (2,), "float64") for n in "abc")
    p = a + b
    q = p * c
    s = (q + a) + b
    rng = np.random.default_rng(1)
    return er.build_graph([s]), {n: rng.standard_normal(2) for n in "abc"}


def test_belady_evicts_the_block_used_furthest_in_the_future() -> None:
    g, feeds = chain_graph()
    tg = placed(g)
    assert [t.kind for t in tg.tasks] == ["input", "input", "apply", "input", "apply"] + [
        "apply"
    ] * 2
    # Room for four blocks: when q needs one, a (next used by r) and b (next used by s) are
    # candidates and p, c are q's operands. Belady evicts b; FIFO or LRU would evict a.
    mg = plan_memory(tg, 64)
    evicted = [n.block for n in mg.nodes if n.kind == "evict"]
    assert evicted == [input_task(tg, "b")]
    assert [n.block for n in mg.nodes if n.kind == "load"] == evicted
    assert mg.stats.evicted_bytes == (16,) and mg.stats.loaded_bytes == (16,)
    assert_same(interpret_memory(mg, feeds), interpret(g, feeds))


def test_belady_never_evicts_the_current_operands() -> None:
    g, feeds = chain_graph()
    tg = placed(g)
    mg = plan_memory(tg, 48)  # the minimum: every step's operands and output, nothing else
    assert min_budget(tg) == (48,)
    for n in mg.nodes:
        if n.kind == "evict":
            later = [m for m in mg.nodes[n.id :] if m.kind in ("compute", "touch")]
            assert n.block not in later[0].sources
    assert_same(interpret_memory(mg, feeds), interpret(g, feeds))


def test_an_output_needed_by_no_one_is_offloaded_first() -> None:
    a, b = er.input("a", (2,), "float64"), er.input("b", (2,), "float64")
    early = a * 2.0  # an output nothing else reads: its next use is never
    late = ((a + b) * b) + a
    g = er.build_graph([early, late])
    tg = placed(g)
    feeds = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, -1.0])}
    # Steps: a, early, b, p = a+b, q = p*b, late = q+a. With room for four blocks, q must
    # evict a (next used by late) or early (never used again): early goes to host.
    mg = plan_memory(tg, 64)
    early_task = next(b for b, _ in tg.outputs[0])
    first = next(n for n in mg.nodes if n.kind == "evict")
    assert first.block == early_task
    place = next(o for o in mg.outputs if o.block == early_task)
    assert place.on_host and place.region is None
    assert_same(interpret_memory(mg, feeds), interpret(g, feeds))


# --- budgets ----------------------------------------------------------------------------------


def test_exact_fit_budget_works() -> None:
    g, feeds = mlp_graph()
    tg = mlp_placed()
    low = min_budget(tg)
    mg = plan_memory(tg, list(low))
    assert mg.stats.evictions > 0
    assert all(p <= b for p, b in zip(mg.stats.peak_bytes, low))
    want = interpret(g, feeds)
    assert_same(interpret_memory(mg, feeds), want)
    for seed in range(20):
        assert_same(
            interpret_memory(mg, feeds, random_linear_extension(mg, random.Random(seed))), want
        )


@pytest.mark.parametrize("device", [0, 1])
def test_one_byte_short_names_the_task_node_device_and_bytes(device: int) -> None:
    tg = mlp_placed()
    low = list(min_budget(tg))
    low[device] -= 1
    with pytest.raises(er.MemoryBudgetError) as info:
        plan_memory(tg, low)
    e = info.value
    t = tg.tasks[e.task]
    assert e.device == device and e.needed == low[device] + 1
    assert t.device == device or any(tg.tasks[i].device == device for i in t.inputs)
    msg = str(e)
    assert f"t{t.id}" in msg and tg.graph[t.node].name in msg
    assert f"device {device}" in msg and f"{low[device] + 1} bytes" in msg
    assert isinstance(e, er.CompileError)


def test_an_aggregation_needs_only_one_partial_at_a_time() -> None:
    x = er.input("x", (4, 8), "float64")
    g = er.build_graph([x.sum(1)])
    dec = {0: Partition.even((4, 8), (1, 4)), 1: Partition.even((4, 8), (1, 4))}
    tg = build_tasks(g, dec)
    tg = place_tasks(tg, [0] * len(tg), 1)
    (agg,) = [t for t in tg.tasks if t.kind == "agg"]
    assert len(agg.inputs) == 4 and agg.nbytes == 32
    # Each apply holds its 64-byte input and 32-byte partial: 96 bytes. Accumulating needs the
    # 32-byte sum and one partial; a single agg node would need all four partials: 160 bytes.
    assert min_budget(tg) == (96,)
    mg = plan_memory(tg, 96)
    feeds = {"x": np.arange(32.0).reshape(4, 8)}
    assert_same(interpret_memory(mg, feeds), interpret(g, feeds))
    assert set(mg.groups) == {agg.id} and len(mg.groups[agg.id]) == 4
    (done,) = [n for n in mg.nodes if n.kind == "done"]
    assert set(done.deps) == set(mg.groups[agg.id])


def test_every_budget_from_minimum_to_unlimited_matches_the_reference() -> None:
    g, feeds = mlp_graph()
    tg = mlp_placed()
    want = interpret(g, feeds)
    low = np.array(min_budget(tg))
    high = np.array(plan_memory(tg, None).stats.peak_bytes)
    for frac in np.linspace(0, 1, 9):
        budget = [int(x) for x in low + np.floor(frac * (high - low))]
        mg = plan_memory(tg, budget)
        assert all(p <= b for p, b in zip(mg.stats.peak_bytes, budget))
        assert_same(interpret_memory(mg, feeds), want)
        assert_same(
            interpret_memory(mg, feeds, random_linear_extension(mg, random.Random(3))), want
        )
        if frac == 0:
            assert mg.stats.evictions > 0


def test_unlimited_budget_has_no_offload_and_no_memory_edges() -> None:
    g, feeds = mlp_graph()
    mg = plan_memory(mlp_placed(), None)
    assert mg.stats.evictions == mg.stats.loads == 0
    assert not any(n.kind in ("evict", "load") for n in mg.nodes)
    assert all(n.deps == () for n in mg.nodes if n.kind == "alloc")
    assert all(not o.on_host for o in mg.outputs)
    assert_same(interpret_memory(mg, feeds), interpret(g, feeds))


def test_budget_arguments_are_checked() -> None:
    tg = mlp_placed()
    with pytest.raises(er.CompileError, match="2 devices"):
        plan_memory(tg, [1000])
    with pytest.raises(er.CompileError, match="negative"):
        plan_memory(tg, [-1, 1000])
    with pytest.raises(er.CompileError, match="strategy"):
        plan_memory(tg, None, strategy="best-fit")
    with pytest.raises(er.CompileError, match="power of two"):
        plan_memory(tg, None, alignment=12)
    with pytest.raises(er.CompileError, match="place_tasks"):
        g, _ = mlp_graph()
        plan_memory(build_tasks(g, {n.id: _whole(n) for n in g.nodes}), None)


def _whole(n):
    return Partition.whole(n.einsum.join_shape if n.op == "einsum" else n.shape)


# --- grouped accumulation -------------------------------------------------------------------


def _ancestors(mg: MemGraph, i: int) -> set[int]:
    seen: set[int] = set()
    stack = list(mg.nodes[i].deps)
    while stack:
        j = stack.pop()
        if j not in seen:
            seen.add(j)
            stack.extend(mg.nodes[j].deps)
    return seen


def test_touches_of_a_group_are_left_unordered() -> None:
    mg = plan_memory(mlp_placed(), None)
    assert mg.groups
    for touches in mg.groups.values():
        assert len(touches) > 1
        for t in touches:
            assert not set(touches) & _ancestors(mg, t)
            assert mg.nodes[t].kind == "touch"


def test_touches_run_in_any_order() -> None:
    g, feeds = mlp_graph()
    mg = plan_memory(mlp_placed(), None)
    want = interpret(g, feeds)
    for pick in (min, max):  # oldest-ready first, then newest-ready first
        f = Frontier(mg)
        order = []
        while f.ready:
            i = pick(f.ready)
            f.ready.remove(i)
            order.append(i)
            f.ready.extend(f.complete(i))
        assert_same(interpret_memory(mg, feeds, order), want)


# --- engine API and printing ------------------------------------------------------------------


def test_engine_view_of_the_graph() -> None:
    tg = mlp_placed()
    mg = plan_memory(tg, [b + 64 for b in min_budget(tg)])
    assert mg.fixed_order() == tuple(range(len(mg)))
    per = [mg.device_nodes(d) for d in range(mg.ndev)]
    assert sum(map(len, per)) == len(mg)
    for d, ns in enumerate(per):
        assert all(n.device == d for n in ns)
        assert all(n.region is None or n.region.device == d for n in ns)
    for n in mg.nodes:
        assert all(n.id in mg.successors(p) for p in n.deps)
        assert n.is_transfer == (n.kind in ("evict", "load"))
    moves = [n for n in mg.nodes if n.kind == "compute" and tg.tasks[n.block].kind == "move"]
    assert moves and all(n.reads[0].device != n.device for n in moves)


def test_printing_shows_nodes_per_device_with_offsets() -> None:
    tg = mlp_placed()
    mg = plan_memory(tg, list(min_budget(tg)))
    text = str(mg)
    assert text.startswith("memgraph:")
    assert "device 0 (budget" in text and "device 1 (budget" in text
    for kind in ("alloc", "compute", "touch", "done", "free", "evict", "load"):
        assert f" {kind} " in text
    assert "-> host" in text and "host -> [" in text and "[0," in text


# --- the interpreter catches broken plans and orders -----------------------------------------


def tight() -> tuple[MemGraph, dict[str, np.ndarray]]:
    _, feeds = mlp_graph()
    tg = mlp_placed()
    return plan_memory(tg, list(min_budget(tg))), feeds


def moved_before(order: list[int], i: int, j: int) -> list[int]:
    """`order` with node i moved to just before node j."""
    out = [k for k in order if k != i]
    out.insert(out.index(j), i)
    return out


def test_reusing_memory_before_it_is_freed_is_caught() -> None:
    mg, feeds = tight()
    a = next(n for n in mg.nodes if n.kind == "alloc" and n.deps)
    freer = max(a.deps)
    order = moved_before(list(mg.fixed_order()), a.id, freer)
    with pytest.raises(MemorySafetyError, match="overlaps live"):
        interpret_memory(mg, feeds, order, check_deps=False)
    with pytest.raises(MemorySafetyError, match="before its dependencies"):
        interpret_memory(mg, feeds, order)


@pytest.mark.parametrize("kind", ["free", "evict"])
def test_reading_a_released_block_is_caught(kind: str) -> None:
    mg, feeds = tight()

    def readers(n):
        return [d for d in n.deps if n.block in mg.nodes[d].sources]

    rel = next(n for n in mg.nodes if n.kind == kind and readers(n))
    reader = max(readers(rel))
    order = moved_before(list(mg.fixed_order()), rel.id, reader)
    word = "freed" if kind == "free" else "evicted"
    with pytest.raises(MemorySafetyError, match=word):
        interpret_memory(mg, feeds, order, check_deps=False)


def test_an_allocation_past_the_budget_is_caught() -> None:
    mg, feeds = tight()
    nodes = list(mg.nodes)
    a = next(n for n in nodes if n.kind == "alloc")
    r = dataclasses.replace(a.region, offset=mg.budgets[a.device] - 8)
    nodes[a.id] = dataclasses.replace(a, region=r)
    bad = dataclasses.replace(mg, nodes=tuple(nodes))
    with pytest.raises(MemorySafetyError, match="exceeds the budget"):
        interpret_memory(bad, feeds)
    with pytest.raises(er.CompileError, match="outside the arena"):
        bad.validate()


def test_an_order_must_list_every_node_once() -> None:
    mg, feeds = tight()
    with pytest.raises(MemorySafetyError, match="exactly once"):
        interpret_memory(mg, feeds, list(mg.fixed_order())[:-1])


def test_run_reports_peak_within_budget_and_outputs_on_host() -> None:
    mg, feeds = tight()
    m = run_memory(mg, feeds, random_linear_extension(mg, np.random.default_rng(5)))
    assert all(p <= b for p, b in zip(m.peak, mg.budgets))
    assert set(m.host) >= {o.block for o in mg.outputs if o.on_host}
