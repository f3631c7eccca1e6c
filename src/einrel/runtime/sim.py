"""The simulated clock: a scheduling core driven by a discrete-event clock instead of threads,
and the simulated engine of task graphs built on it (`mem.sim` drives the memory core with it).

Task durations come from the cost model (or a `durations` function). Same priorities, the same
resources as the local engine (compute workers per device, one inbound transfer channel per
device for moves, optional global cap on running compute tasks) and the same memory accounting,
so placement search and policy training see what the real engine would do, minus noise.

All completions at one instant are processed (in task-id order) before anything is launched at
that instant, matching the core's "frees before launches" rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Any, Protocol

from ..errors import ExecutionError
from ..taskgraph.cost import CostModel
from ..taskgraph.ir import Task, TaskGraph
from .core import Core, Event, Priority, TaskSchedule, make_task_schedule


@dataclass
class SimResult:
    """One simulated run: makespan, per-device peak live bytes and busy compute seconds."""

    makespan_s: float
    peak_bytes: dict[int, int]
    busy_s: dict[int, float]
    bytes_moved: int
    events: list[Event] = field(default_factory=list)


class SimEngine:
    """Predicts a run of a placed task graph on `ndev` devices under a cost model."""

    def __init__(
        self,
        ndev: int,
        cost_model: CostModel | None = None,
        workers_per_device: int = 1,
        priority: Priority = "critical-path",
        max_running: int | None = None,
        durations: Callable[[Task], float] | None = None,
    ) -> None:
        if ndev < 1 or workers_per_device < 1:
            raise ValueError(
                f"need ndev >= 1 and workers_per_device >= 1, got {ndev}, {workers_per_device}"
            )
        self.ndev = ndev
        self.cost_model = cost_model if cost_model is not None else CostModel.default()
        self.workers_per_device = workers_per_device
        self.priority = priority
        self.max_running = max_running
        self.durations = durations if durations is not None else self.cost_model.task_seconds

    def plan(self, tg: TaskGraph) -> TaskSchedule:
        return make_task_schedule(tg, self.ndev, self.priority, self.durations)

    def simulate(self, tg: TaskGraph, trace: bool = True) -> SimResult:
        plan = self.plan(tg)
        dur = [float(self.durations(t)) for t in tg.tasks]
        bad = [t for t, d in enumerate(dur) if not d >= 0.0]
        if bad:
            raise ExecutionError(f"negative or NaN durations for tasks {bad[:5]}")
        core = Core(plan, self.workers_per_device, self.max_running, record=trace)
        now = run_clock(core, lambda t, slot: dur[t], ties_by_item=True)
        return SimResult(
            makespan_s=now,
            peak_bytes=dict(enumerate(core.peak)),
            busy_s=dict(enumerate(core.busy)),
            bytes_moved=core.bytes_moved,
            events=core.events or [],
        )


class ClockFree(Protocol):
    """What the simulated clock drives: a scheduling core (the task-graph `Core` or the
    memory `MemCore`), which never reads a clock itself."""

    def dispatch(self, now: float) -> list[tuple[int, int]]: ...

    def complete(self, item: int, slot: int, now: float) -> Any: ...

    @property
    def finished(self) -> bool: ...

    def stall_message(self) -> str: ...


def run_clock(
    core: ClockFree, seconds: Callable[[int, int], float], ties_by_item: bool = False
) -> float:
    """Drive `core` with a discrete-event clock: each launched item ends `seconds(item, slot)`
    later; every completion at one instant is booked (in item order with `ties_by_item`, else
    in launch order) before anything is launched at that instant. Returns the makespan."""
    heap: list[tuple[float, int, int, int]] = []
    seq = 0

    def launch(now: float) -> None:
        nonlocal seq
        for item, slot in core.dispatch(now):
            seq += 1
            heappush(heap, (now + seconds(item, slot), item if ties_by_item else seq, item, slot))

    launch(0.0)
    now = 0.0
    while heap:
        now = heap[0][0]
        while heap and heap[0][0] == now:
            _, _, item, slot = heappop(heap)
            core.complete(item, slot, now)
        launch(now)
    if not core.finished:
        raise ExecutionError(f"{core.stall_message()} (simulated, at {now:.6g} s)")
    return now
