"""Tiny synthetic task graphs that measure engine overhead rather than kernels (calibration and
`benchmarks/overhead.py`): a one-element relu per task, so scheduling dominates."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from ..frontend.tensor import build_graph
from ..ir.graph import GNode, Graph
from ..taskgraph.interpret import run_task
from ..taskgraph.ir import Task, TaskGraph


def _relu_graph() -> tuple[Graph, GNode]:
    from .. import frontend as F

    x = F.input("x", (1,), "float64")
    graph = build_graph([F.relu(x)])
    return graph, graph[graph.outputs[0]]


def _finish(graph: Graph, tasks: list[Task], sinks: list[int], ndev: int) -> TaskGraph:
    tg = TaskGraph(graph, tuple(tasks), (tuple((t, (0,)) for t in sinks),), ndev)
    tg.validate()
    return tg


def wide_taskgraph(n: int, ndev: int = 1) -> tuple[TaskGraph, dict[int, np.ndarray]]:
    """One input block per device and n - ndev independent relus, dealt round-robin; every relu
    is an output, so nothing is culled and every result is kept."""
    graph, node = _relu_graph()
    tasks = [Task(d, "input", 0, (), (1,), "float64", d, None, (0,)) for d in range(ndev)]
    for i in range(ndev, n):
        d = i % ndev
        tasks.append(Task(i, "apply", node.id, (d,), (1,), "float64", d, node.einsum))
    return _finish(graph, tasks, list(range(ndev, n)), ndev), {0: np.ones(1)}


def chain_taskgraph(n: int, ndev: int = 1) -> tuple[TaskGraph, dict[int, np.ndarray]]:
    """An input block and a chain of n - 1 relus, all on device 0."""
    graph, node = _relu_graph()
    tasks = [Task(0, "input", 0, (), (1,), "float64", 0, None, (0,))]
    for i in range(1, n):
        tasks.append(Task(i, "apply", node.id, (i - 1,), (1,), "float64", 0, node.einsum))
    return _finish(graph, tasks, [n - 1], ndev), {0: np.ones(1)}


def kernel_seconds(
    tg: TaskGraph, inputs: Mapping[int, np.ndarray], variables: Mapping[str, float] | None = None
) -> float:
    """Time of running every task once in id order with no engine (best of three)."""
    var = dict(variables or {})
    best = float("inf")
    for _ in range(3):
        values: list[np.ndarray | None] = [None] * len(tg.tasks)
        t0 = time.perf_counter()
        for t in tg.tasks:
            values[t.id] = run_task(t, [values[i] for i in t.inputs], inputs, var)  # type: ignore[misc]
        best = min(best, time.perf_counter() - t0)
    return best
