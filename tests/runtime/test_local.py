"""Differential test of the runtime: reference interpreter == block interpreter == local engine,
on random graphs, random partitions and random placements, plus the engine's own event log
checked for dependency order, co-location, worker exclusivity and exact peak accounting.

Tolerance: everything is float64. The reference interpreter evaluates whole tensors; the block
levels split aggregated labels and sum partials in another order, which moves results by a few
units in the last place times the condition of the sum. The graphs here are shallow (at most
six ops on entries of size ~1), so rtol = 1e-12 plus an absolute 1e-12 times the output scale
(for entries that cancel to ~0) leaves about three orders of magnitude of headroom over
rounding while still catching any wrong block, offset or aggregation.
"""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import einrel as er
from einrel.decompose.partition import Partition
from einrel.devices import cores
from einrel.frontend.leaves import var
from einrel.frontend.reference import bind_feeds, interpret
from einrel.ir.graph import GNode, Graph
from einrel.runtime import LocalEngine, SimEngine
from einrel.taskgraph.build import build_tasks
from einrel.taskgraph.interpret import assemble_outputs, interpret_tasks
from einrel.taskgraph.ir import TaskGraph
from einrel.taskgraph.place import place_tasks
from einrel.testing.events import check_events, peak_from_events

RTOL = 1e-12


def close(got: np.ndarray, want: np.ndarray) -> None:
    scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale)


@st.composite
def programs(draw: st.DrawFn) -> tuple[Graph, dict[str, object]]:
    """A random composition of einrel ops on small float64 matrices, and feeds for it."""
    sizes = draw(st.lists(st.integers(2, 5), min_size=3, max_size=3))
    feeds: dict[str, object] = {}
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    def new_input(shape: tuple[int, ...]) -> er.Tensor:
        name = f"in{len(feeds)}"
        feeds[name] = rng.standard_normal(shape)
        return er.input(name, shape, "float64")

    pool = [new_input((sizes[0], sizes[1]))]

    def like(shape: tuple[int, ...]) -> er.Tensor:
        same = [t for t in pool if t.shape == shape]
        return draw(st.sampled_from(same)) if same and draw(st.booleans()) else new_input(shape)

    for _ in range(draw(st.integers(1, 6))):
        a = draw(st.sampled_from(pool))
        m, n = a.shape
        op = draw(
            st.sampled_from(
                ["matmul", "relu", "softmax", "sum", "max", "concat", "slice", "join", "dist", "T"]
                + ["scale", "add"]
            )
        )
        if op == "matmul":
            y = a @ like((n, draw(st.sampled_from(sizes))))
        elif op == "relu":
            y = er.relu(a)
        elif op == "softmax":
            y = er.softmax(a, axis=draw(st.sampled_from([0, 1])))
        elif op == "sum":
            y = a.sum(axis=draw(st.sampled_from([0, 1])), keepdims=True)
        elif op == "max":
            y = er.einsum("ij->j", a, agg="max").reshape(1, n)
        elif op == "concat":
            ax = draw(st.sampled_from([0, 1]))
            other = like(
                (draw(st.sampled_from(sizes)), n) if ax == 0 else (m, draw(st.integers(1, 3)))
            )
            y = er.concat([a, other], axis=ax)
        elif op == "slice":
            if m < 2:
                continue
            lo = draw(st.integers(0, m - 2))
            y = a[lo : draw(st.integers(lo + 1, m)), :]
        elif op == "join":
            y = er.einsum("ij,ij->ij", a, like((m, n)), join=lambda p, q: (p - q) ** 2, agg=None)
        elif op == "dist":
            y = er.einsum(
                "ik,jk->ij",
                a,
                like((draw(st.sampled_from(sizes)), n)),
                join=lambda p, q: (p - q) ** 2,
            )
        elif op == "T":
            y = a.T
        elif op == "scale":
            y = er.einsum("ij->ij", a, join=lambda p: p * var("lr"), agg=None)
            feeds["lr"] = 0.5
        else:
            y = a + like((m, n))
        pool.append(y)
    outs = [pool[-1]] + ([pool[len(pool) // 2]] if len(pool) > 2 and draw(st.booleans()) else [])
    graph = er.build_graph(outs)
    used = {n.name for n in graph.inputs} | set(graph.variables)
    return graph, {k: v for k, v in feeds.items() if k in used}


def partition_shape(n: GNode) -> tuple[int, ...]:
    """What a node's partition covers: an einsum's join shape, any other node's shape."""
    return n.einsum.join_shape if n.op == "einsum" else n.shape


def random_partitions(draw: st.DrawFn, graph: Graph, most: int) -> dict[int, Partition]:
    return {
        n.id: Partition.even(
            partition_shape(n), [draw(st.integers(1, min(most, s))) for s in partition_shape(n)]
        )
        for n in graph.nodes
    }


@st.composite
def placed(draw: st.DrawFn, graph: Graph) -> TaskGraph:
    """Random even partitions for every node and a random device for every task."""
    tg = build_tasks(graph, random_partitions(draw, graph, 3))
    ndev = draw(st.integers(1, 4))
    devices = [draw(st.integers(0, ndev - 1)) for _ in tg.tasks]
    return place_tasks(tg, devices, ndev)


def check_run(tg: TaskGraph, feeds: dict[str, object], engine: LocalEngine) -> None:
    want = interpret(tg.graph, feeds)
    blocks = interpret_tasks(tg, feeds)
    inputs, variables = bind_feeds(tg.graph, feeds)
    res = engine.run(tg, inputs, variables, trace=True)
    got = assemble_outputs(tg, res.values)
    for w, b, g in zip(want, blocks, got):
        close(b, w)
        close(g, w)
    check_events(tg, res.events, engine.workers_per_device, engine.max_running)
    peak = peak_from_events(tg, res.events)
    assert {d: peak.get(d, 0) for d in res.peak_bytes} == res.peak_bytes
    assert res.bytes_moved == sum(t.nbytes for t in tg.tasks if t.kind == "move")


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_engines_agree_on_random_graphs(data: st.DataObject) -> None:
    graph, feeds = data.draw(programs())
    tg = data.draw(placed(graph))
    priority = data.draw(st.sampled_from(["critical-path", "fifo", "bfs", "dfs", "given"]))
    wpd = data.draw(st.integers(1, 2))
    check_run(tg, feeds, LocalEngine(4, workers_per_device=wpd, priority=priority))


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_one_device_engine_follows_the_simulated_order(data: st.DataObject) -> None:
    """On one device with one worker the order is decided by priorities alone, so the real
    engine and the simulator, sharing one core, must run tasks in the same order with the
    same peak."""
    graph, _ = data.draw(programs())
    tg0 = build_tasks(graph, random_partitions(data.draw, graph, 2))
    tg = place_tasks(tg0, [0] * len(tg0.tasks), 1)
    priority = data.draw(st.sampled_from(["critical-path", "fifo", "bfs", "dfs", "given"]))
    feeds = {n.name: np.ones(n.shape) for n in graph.inputs} | {v: 1.0 for v in graph.variables}
    inputs, variables = bind_feeds(graph, feeds)
    real = LocalEngine(1, priority=priority).run(tg, inputs, variables, trace=True)
    sim = SimEngine(1, priority=priority).simulate(tg)
    assert [e[0] for e in sorted(real.events, key=lambda e: e[3])] == [
        e[0] for e in sorted(sim.events, key=lambda e: e[3])
    ]
    assert real.peak_bytes == sim.peak_bytes


def _matmul_chain(ndev: int, parts: int = 4, n: int = 64) -> tuple[TaskGraph, dict[str, object]]:
    a = er.input("a", (n, n), "float64")
    b = er.input("b", (n, n), "float64")
    c = er.input("c", (n, n), "float64")
    graph = er.build_graph([er.relu(a @ b) @ c])
    dec = {
        nd.id: Partition.even(partition_shape(nd), [min(parts, s) for s in partition_shape(nd)])
        for nd in graph.nodes
    }
    tg = build_tasks(graph, dec)
    tg = place_tasks(tg, [t.id % ndev for t in tg.tasks], ndev)
    rng = np.random.default_rng(0)
    return tg, {k: rng.standard_normal((n, n)) for k in "abc"}


def test_four_devices_on_two_cores_respect_the_core_cap() -> None:
    tg, feeds = _matmul_chain(4)
    eng = LocalEngine(4)
    assert eng.max_running == cores()
    assert eng.blas_threads == max(1, cores() // 4)
    check_run(tg, feeds, eng)


def test_runs_keep_their_threads_until_close_and_engine_is_reusable() -> None:
    tg, feeds = _matmul_chain(2)
    before = threading.active_count()
    eng = LocalEngine(2)
    first = eng.evaluate(tg, feeds)
    kept = len(eng.threads)
    assert kept == 4  # a worker and a transfer channel per device
    second = eng.evaluate(tg, feeds)
    np.testing.assert_array_equal(first[0], second[0])
    close(first[0], interpret(tg.graph, feeds)[0])
    assert threading.active_count() == before + kept
    eng.close()
    assert threading.active_count() == before
    np.testing.assert_array_equal(eng.evaluate(tg, feeds)[0], first[0])  # new threads
    del eng
    gc.collect()
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before  # a dropped engine's threads end too


def test_graph_on_more_devices_than_the_engine_is_refused() -> None:
    tg, feeds = _matmul_chain(2)
    with pytest.raises(er.CompileError, match="devices"):
        LocalEngine(1).run(tg, *bind_feeds(tg.graph, feeds))
