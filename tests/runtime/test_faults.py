"""Failures inside worker threads: a clear ExecutionError, a prompt stop, no hang, no leak, and
an engine that runs again afterwards."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

import einrel as er
from einrel.decompose.partition import Partition
from einrel.frontend.reference import bind_feeds, interpret
from einrel.runtime import LocalEngine
from einrel.taskgraph.build import build_tasks
from einrel.taskgraph.interpret import assemble_outputs, run_task
from einrel.taskgraph.ir import Task, TaskGraph
from einrel.taskgraph.place import place_tasks
from helpers import run_with_deadline

Runner = Callable[[Task, Sequence[np.ndarray], Mapping[int, np.ndarray], Mapping[str, float]], Any]


def mlp(ndev: int) -> tuple[TaskGraph, dict[str, np.ndarray]]:
    x = er.input("x", (32, 16), "float64")
    w = er.input("w", (16, 24), "float64")
    g = er.build_graph([er.softmax(er.relu(x @ w), axis=-1)])
    dec = {}
    for n in g.nodes:
        shape = n.einsum.join_shape if n.op == "einsum" else n.shape
        dec[n.id] = Partition.even(shape, [min(2, s) for s in shape])
    tg = build_tasks(g, dec)
    tg = place_tasks(tg, [t.id % ndev for t in tg.tasks], ndev)
    rng = np.random.default_rng(1)
    return tg, {"x": rng.standard_normal((32, 16)), "w": rng.standard_normal((16, 24))}


def failing_at(bad: int, delay: float = 0.0) -> Runner:
    def runner(
        t: Task,
        args: Sequence[np.ndarray],
        inputs: Mapping[int, np.ndarray],
        v: Mapping[str, float],
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        if t.id == bad:
            raise ValueError("injected kernel failure")
        if delay:
            time.sleep(delay)
        return run_task(t, args, inputs, v, out)

    return runner


@pytest.mark.parametrize("ndev", [1, 2, 4])
def test_failing_kernel_names_task_and_node_then_engine_runs_again(ndev: int) -> None:
    tg, feeds = mlp(ndev)
    inputs, variables = bind_feeds(tg.graph, feeds)
    bad = next(t for t in tg.tasks if t.kind == "apply" and "max(x0, 0)" in str(t.op))
    node = tg.graph[bad.node].name
    threads = threading.active_count()
    eng = LocalEngine(ndev, runner=failing_at(bad.id))
    with pytest.raises(er.ExecutionError) as info:
        run_with_deadline(lambda: eng.run(tg, inputs, variables), 20)
    msg = str(info.value)
    assert f"t{bad.id} " in msg and "(apply)" in msg and node in msg
    assert "injected kernel failure" in msg
    assert isinstance(info.value.__cause__, ValueError)
    kept = len(eng.threads)  # idle, kept for the next run
    assert kept > 0 and threading.active_count() == threads + kept
    # the same engine, healthy again, and a fresh one
    eng.runner = run_task
    want = interpret(tg.graph, feeds)[0]
    for e in (eng, LocalEngine(ndev)):
        got = assemble_outputs(tg, e.run(tg, inputs, variables).values)[0]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        e.close()
    assert threading.active_count() == threads


def test_failure_stops_the_run_promptly() -> None:
    """An early failure ends the run once the kernels already running finish: after the failing
    task starts, at most one more task per slot starts (those it was racing), never the rest."""
    tg, feeds = mlp(2)
    inputs, variables = bind_feeds(tg.graph, feeds)
    first_apply = next(t.id for t in tg.tasks if t.kind == "apply")
    started: list[int] = []
    fail = failing_at(first_apply, delay=0.01)

    def runner(t: Task, *rest: Any, **kw: Any) -> np.ndarray:
        started.append(t.id)
        return fail(t, *rest, **kw)

    eng = LocalEngine(2, runner=runner, priority="given")
    with pytest.raises(er.ExecutionError, match=f"t{first_apply} "):
        run_with_deadline(lambda: eng.run(tg, inputs, variables), 20)
    slots = 2 + 2  # a compute worker and a transfer channel per device
    after = len(started) - 1 - started.index(first_apply)
    assert after <= slots < len(tg.tasks) - started.index(first_apply) - 1


def test_missing_input_array_fails_in_its_input_task() -> None:
    tg, feeds = mlp(2)
    inputs, variables = bind_feeds(tg.graph, feeds)
    del inputs[0]
    with pytest.raises(er.ExecutionError, match=r"\(input\) of node x") as info:
        run_with_deadline(lambda: LocalEngine(2).run(tg, inputs, variables), 20)
    assert isinstance(info.value.__cause__, KeyError)
