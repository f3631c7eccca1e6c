"""The simulated engine on hand-built task graphs whose makespans and peaks are worked out by
hand (durations are binary fractions, so the float arithmetic is exact)."""

from __future__ import annotations

import pytest

import einrel as er
from einrel.decompose.partition import Partition
from einrel.runtime import CostModel, SimEngine
from einrel.taskgraph.build import build_tasks
from einrel.taskgraph.ir import Task, TaskGraph
from einrel.taskgraph.place import place_tasks
from einrel.testing.events import check_events, peak_from_events

KIND_SECONDS = {"input": 0.5, "apply": 1.0, "move": 2.0, "assemble": 0.125}


def by_kind(t: Task) -> float:
    return KIND_SECONDS[t.kind]


def relu_sum(devices: list[int], ndev: int) -> TaskGraph:
    """x[8] in two blocks -> relu per block -> sum over the whole vector.
    Unplaced tasks: t0 in0, t1 relu0, t2 in1, t3 relu1, t4 assemble, t5 sum."""
    x = er.input("x", (8,), "float64")
    g = er.build_graph([er.relu(x).sum()])
    dec = {0: Partition.even((8,), [2]), 1: Partition.even((8,), [2]), 2: Partition.whole((8,))}
    tg = build_tasks(g, dec)
    assert [t.kind for t in tg.tasks] == ["input", "apply", "input", "apply", "assemble", "apply"]
    return place_tasks(tg, devices, ndev)


def simulate(
    tg: TaskGraph, ndev: int, workers_per_device: int = 1, max_running: int | None = None
) -> tuple[float, dict[int, int]]:
    eng = SimEngine(ndev, None, workers_per_device, max_running=max_running, durations=by_kind)
    res = eng.simulate(tg)
    check_events(tg, res.events, workers_per_device, max_running)
    replay = peak_from_events(tg, res.events)
    assert {d: replay.get(d, 0) for d in res.peak_bytes} == res.peak_bytes
    return res.makespan_s, res.peak_bytes


def test_parallel_devices_halve_the_makespan() -> None:
    one = relu_sum([0] * 6, 1)
    # one worker: in0, in1, relu0, relu1, assemble, sum = 0.5 + 0.5 + 1 + 1 + 0.125 + 1
    assert simulate(one, 1)[0] == 4.125
    # two workers on the device: both inputs, then both relus, at once
    assert simulate(one, 1, workers_per_device=2)[0] == 0.5 + 1 + 0.125 + 1
    # a global cap of one running compute task serialises two workers again
    assert simulate(one, 1, workers_per_device=2, max_running=1)[0] == 4.125


def test_moves_share_one_inbound_channel_and_leave_compute_free() -> None:
    tg = relu_sum([0, 0, 0, 0, 1, 1], 2)
    # device 0, two workers: inputs 0-0.5, relus 0.5-1.5; both blocks move into device 1 on its
    # single channel, one after the other: 1.5-3.5, 3.5-5.5; assemble, then sum: 5.625-6.625
    assert simulate(tg, 2, workers_per_device=2)[0] == 6.625
    # one worker: in0 0-0.5, in1 0.5-1 (longer remaining path first), relu0 1-2, relu1 2-3 runs
    # while relu0's block moves 2-4; the second move waits for the channel: 4-6; 6.125; 7.125
    makespan, peak = simulate(tg, 2)
    assert makespan == 7.125
    # device 0: two inputs + relu0 (96 B); relu0's block stays until its move lands at 4.0.
    # device 1: both moved blocks + the assembled vector (32 + 32 + 64 B)
    assert peak == {0: 96, 1: 128}


def priority_case() -> TaskGraph:
    """x -> exp (long, needed by nobody else) and x -> relu -> sigmoid (on the other device).
    Unplaced: t0 input, t1 exp, t2 relu, t3 sigmoid."""
    x = er.input("x", (4,), "float64")
    g = er.build_graph([er.exp(x), er.sigmoid(er.relu(x))])
    dec = {
        n.id: Partition.whole(n.einsum.join_shape if n.op == "einsum" else n.shape) for n in g.nodes
    }
    tg = build_tasks(g, dec)
    return place_tasks(tg, [0, 0, 0, 1], 2)


def node_seconds(t: Task) -> float:
    return {"input": 0.5, "move": 0.25}.get(t.kind, {1: 3.0, 2: 1.0, 3: 3.0}.get(t.node, 0.0))


@pytest.mark.parametrize(
    ("priority", "makespan"),
    [
        # relu first: 0.5-1.5, move -1.75, sigmoid -4.75 while exp runs 1.5-4.5
        ("critical-path", 4.75),
        ("dfs", 4.75),  # relu was released last
        # exp first (lower id / released first): 0.5-3.5, relu -4.5, move -4.75, sigmoid -7.75
        ("given", 7.75),
        ("fifo", 7.75),
        ("bfs", 7.75),
    ],
)
def test_priority_rules(priority: str, makespan: float) -> None:
    tg = priority_case()
    res = SimEngine(2, durations=node_seconds, priority=priority).simulate(tg)
    assert res.makespan_s == makespan
    assert res.busy_s == {0: 4.5, 1: 3.0}
    assert res.bytes_moved == 32


def test_explicit_priority_keys() -> None:
    tg = priority_case()
    keys = [0.0] * len(tg.tasks)
    exp_task = next(t.id for t in tg.tasks if t.kind == "apply" and t.node == 1)
    keys[exp_task] = 1.0  # everything else first
    assert SimEngine(2, durations=node_seconds, priority=keys).simulate(tg).makespan_s == 4.75


def test_cost_model_durations() -> None:
    cm = CostModel.default().with_(task_overhead_s=1e-3, link_latency_s=1e-2)
    tg = priority_case()
    res = SimEngine(2, cm).simulate(tg)
    # every task pays the overhead; the one move pays latency; the tiny blocks cost ~nothing
    assert res.makespan_s == pytest.approx(3 * 1e-3 + 1e-2, rel=1e-3)


def test_bad_inputs_are_refused() -> None:
    tg = priority_case()
    with pytest.raises(er.CompileError, match="devices"):
        SimEngine(1).simulate(tg)
    with pytest.raises(er.CompileError, match="priority"):
        SimEngine(2, priority="random").simulate(tg)
    with pytest.raises(er.CompileError, match="keys"):
        SimEngine(2, priority=[1.0]).simulate(tg)
    g = tg.graph
    dec = {
        n.id: Partition.whole(n.einsum.join_shape if n.op == "einsum" else n.shape) for n in g.nodes
    }
    unplaced = build_tasks(g, dec)
    with pytest.raises(er.CompileError, match="not placed"):
        SimEngine(2).simulate(unplaced)
