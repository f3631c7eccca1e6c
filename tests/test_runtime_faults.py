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
    ) -> np.ndarray:
        if t.id == bad:
            raise ValueError("injected kernel failure")
        if delay:
            time.sleep(delay)
        return run_task(t, args, inputs, v)

    return runner


def run_with_deadline(fn: Callable[[], Any], seconds: float) -> Any:
    """Run fn in a thread; fail the test instead of hanging the suite if it never returns."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(seconds)
    assert not th.is_alive(), f"engine did not return within {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


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
    assert threading.active_count() == threads
    # the same engine, healthy again, and a fresh one
    eng.runner = run_task
    want = interpret(tg.graph, feeds)[0]
    for e in (eng, LocalEngine(ndev)):
        got = assemble_outputs(tg, e.run(tg, inputs, variables).values)[0]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert threading.active_count() == threads


def test_failure_stops_the_run_promptly() -> None:
    """Every healthy task sleeps 50 ms, so the whole run would last > 1.4 s; an early failure
    must end it as soon as the kernels already running finish."""
    tg, feeds = mlp(2)
    inputs, variables = bind_feeds(tg.graph, feeds)
    assert len(tg.tasks) * 0.05 / 2 > 1.4
    first_apply = next(t.id for t in tg.tasks if t.kind == "apply")
    eng = LocalEngine(2, runner=failing_at(first_apply, delay=0.05), priority="given")
    t0 = time.perf_counter()
    with pytest.raises(er.ExecutionError, match=f"t{first_apply} "):
        run_with_deadline(lambda: eng.run(tg, inputs, variables), 20)
    assert time.perf_counter() - t0 < 1.4  # well before the healthy run would have ended


def test_missing_input_array_fails_in_its_input_task() -> None:
    tg, feeds = mlp(2)
    inputs, variables = bind_feeds(tg.graph, feeds)
    del inputs[0]
    with pytest.raises(er.ExecutionError, match=r"\(input\) of node x") as info:
        run_with_deadline(lambda: LocalEngine(2).run(tg, inputs, variables), 20)
    assert isinstance(info.value.__cause__, KeyError)
