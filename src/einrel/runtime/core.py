"""The scheduling core both engines share: ready queues, priorities, resources, memory accounting.

It never reads a clock. An engine calls `dispatch(now)` to launch what is ready on free resources
and `finish(task, now)` when a task completes; real threads and a simulated clock drive the same
rules, so the simulator predicts what the local engine does.

Resources. Device d has `workers_per_device` compute workers; every task except a move needs
one. Moves need a transfer channel of their destination device (one inbound channel per device,
like a GPU's copy engine), so moves into one device run one at a time and never occupy a compute
worker on either side. `max_running`, when set, caps the compute tasks running at once over all
devices (the local engine sets it to the core count); a freed slot goes to the best ready task of
any device with a free worker.

Priorities (smaller key first, ties by task id): "critical-path" = longest remaining path under
the cost model, "given" = task id order, "bfs" = shallowest first, "fifo" = first released
first, "dfs" = last released first; or an explicit key per task.

Memory. A task's block counts on its device from the task's start until every reader of it has
finished (a move reading it included: the source stays counted until the copy lands); graph-output
blocks stay until the end; a block nobody reads is freed when its task ends. Bytes are logical
(`Task.nbytes`). Frees at one instant happen before launches at that instant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from heapq import heappop, heappush
from typing import Literal, cast, get_args

from ..errors import CompileError
from ..taskgraph.cost import CostModel
from ..taskgraph.ir import Task, TaskGraph

TaskPriority = Literal["critical-path", "fifo", "bfs", "dfs", "given"]
TASK_PRIORITIES: tuple[TaskPriority, ...] = get_args(TaskPriority)

# (task, device, worker, start, end); worker is -1 for moves (they run on a transfer channel).
Event = tuple[int, int, int, float, float]
Priority = TaskPriority | Sequence[float]  # a name, or an explicit key per task


def task_priority(name: str) -> TaskPriority:
    """`name` as a task priority; a CompileError lists the valid names when it is not one."""
    if name not in TASK_PRIORITIES:
        raise CompileError(f"unknown priority {name!r}; expected one of {TASK_PRIORITIES}")
    return cast(TaskPriority, name)


@dataclass(frozen=True)
class TaskSchedule:
    """Per-task arrays derived once from a placed task graph (indexed by task id)."""

    ntasks: int
    ndev: int  # the engine's device count (>= the task graph's)
    device: tuple[int, ...]
    resource: tuple[int, ...]  # compute: device; move: ndev + destination device
    is_move: tuple[bool, ...]
    inputs: tuple[tuple[int, ...], ...]  # distinct inputs
    consumers: tuple[tuple[int, ...], ...]
    nbytes: tuple[int, ...]
    is_output: tuple[bool, ...]
    key: tuple[float, ...]  # static priority key; unused for "fifo" / "dfs"
    order: int  # 0: static key, 1: fifo, -1: dfs


def _levels(inputs: Sequence[Sequence[int]]) -> list[float]:
    level = [0.0] * len(inputs)
    for t, ins in enumerate(inputs):
        if ins:
            level[t] = 1.0 + max(level[i] for i in ins)
    return level


def remaining_path(tg: TaskGraph, seconds: Callable[[Task], float]) -> list[float]:
    """Longest path from each task's start to the end of the graph, its own duration included."""
    rank = [0.0] * len(tg.tasks)
    for t in reversed(tg.tasks):
        cons = tg.consumers(t.id)
        rank[t.id] = seconds(t) + (max(rank[c] for c in cons) if cons else 0.0)
    return rank


def make_task_schedule(
    tg: TaskGraph,
    ndev: int,
    priority: Priority = "critical-path",
    seconds: Callable[[Task], float] | None = None,
) -> TaskSchedule:
    """Check that `tg` is placed on at most `ndev` devices and derive what the core needs;
    `seconds` (default: the default cost model) sizes tasks for the critical path."""
    check_placed(tg, ndev)
    tasks = tg.tasks
    n = len(tasks)
    inputs = tuple(tuple(dict.fromkeys(t.inputs)) for t in tasks)
    order = 0
    if isinstance(priority, str):
        name = task_priority(priority)
        if name == "critical-path":
            cost = seconds if seconds is not None else CostModel.default().task_seconds
            key = [-r for r in remaining_path(tg, cost)]
        elif name == "bfs":
            key = _levels(inputs)
        else:
            key = [float(t) for t in range(n)]
            order = {"fifo": 1, "dfs": -1}.get(name, 0)
    else:
        key = [float(k) for k in priority]
        if len(key) != n:
            raise CompileError(f"priority gives {len(key)} keys for {n} tasks")
    outs = {t for blocks in tg.outputs for t, _ in blocks}
    is_move = tuple(t.kind == "move" for t in tasks)
    return TaskSchedule(
        ntasks=n,
        ndev=ndev,
        device=tuple(t.device for t in tasks),
        resource=tuple(ndev + t.device if m else t.device for t, m in zip(tasks, is_move)),
        is_move=is_move,
        inputs=inputs,
        consumers=tuple(tg.consumers(i) for i in range(n)),
        nbytes=tuple(t.nbytes for t in tasks),
        is_output=tuple(i in outs for i in range(n)),
        key=tuple(key),
        order=order,
    )


class Core:
    """Run state of one execution of a plan: what is ready, running, live and finished.

    `dispatch` returns (task, slot) launches; slots number the compute workers device by device
    (`d * workers_per_device + w`) and then one transfer channel per device."""

    def __init__(
        self,
        plan: TaskSchedule,
        workers_per_device: int = 1,
        max_running: int | None = None,
        record: bool = True,
    ) -> None:
        ndev = plan.ndev
        if workers_per_device < 1:
            raise CompileError(f"need at least one worker per device, got {workers_per_device}")
        self.plan = plan
        self.ndev = ndev
        self.wpd = workers_per_device
        self.max_running = max_running
        self.nslots = ndev * workers_per_device + ndev
        self.resource = plan.resource
        nres = 2 * ndev
        self.heaps: list[list[tuple[float, int]]] = [[] for _ in range(nres)]
        self.free: list[list[int]] = [
            list(reversed(range(d * workers_per_device, (d + 1) * workers_per_device)))
            for d in range(ndev)
        ] + [[ndev * workers_per_device + d] for d in range(ndev)]
        self.base = [d * workers_per_device for d in range(ndev)] + [0] * ndev
        n = plan.ntasks
        self.pending = [len(ins) for ins in plan.inputs]
        self.readers = [len(c) for c in plan.consumers]
        self.live = [0] * ndev
        self.peak = [0] * ndev
        self.busy = [0.0] * ndev
        self.start_at = [0.0] * n
        self.slot_of = [0] * n
        self.events: list[Event] | None = [] if record else None
        self.done = 0
        self.running = 0
        self.seq = 0
        self.bytes_moved = 0
        for t in range(n):
            if self.pending[t] == 0:
                self._push(t)

    def _push(self, t: int) -> None:
        order = self.plan.order
        if order:
            self.seq += 1
            heappush(self.heaps[self.resource[t]], (order * self.seq, t))
        else:
            heappush(self.heaps[self.resource[t]], (self.plan.key[t], t))

    def _start(self, t: int, slot: int, now: float, out: list[tuple[int, int]]) -> None:
        d = self.plan.device[t]
        live = self.live[d] + self.plan.nbytes[t]
        self.live[d] = live
        if live > self.peak[d]:
            self.peak[d] = live
        self.start_at[t] = now
        self.slot_of[t] = slot
        out.append((t, slot))

    def dispatch(self, now: float) -> list[tuple[int, int]]:
        """Launch ready tasks on free resources, best key first; returns (task, slot) pairs."""
        out: list[tuple[int, int]] = []
        heaps, free = self.heaps, self.free
        ndev = self.ndev
        for r in range(ndev, 2 * ndev):  # transfer channels
            h, f = heaps[r], free[r]
            while h and f:
                self._start(heappop(h)[1], f.pop(), now, out)
        cap = self.max_running
        if cap is None:
            for r in range(ndev):
                h, f = heaps[r], free[r]
                while h and f:
                    self._start(heappop(h)[1], f.pop(), now, out)
                    self.running += 1
            return out
        while self.running < cap:
            best = -1
            for r in range(ndev):
                h = heaps[r]
                if h and free[r] and (best < 0 or h[0] < heaps[best][0]):
                    best = r
            if best < 0:
                break
            self._start(heappop(heaps[best])[1], free[best].pop(), now, out)
            self.running += 1
        return out

    def complete(self, t: int, slot: int, now: float) -> list[int]:
        """Record that t ended at `now` (on `slot`, which the core knows already): free its
        slot, release dependents, free dead blocks. Returns the blocks that stopped being live
        (the engine may drop them)."""
        p = self.plan
        slot = self.slot_of[t]
        d = p.device[t]
        start = self.start_at[t]
        if p.is_move[t]:
            self.bytes_moved += p.nbytes[t]
            w = -1
        else:
            self.running -= 1
            self.busy[d] += now - start
            w = slot - self.base[d]
        self.free[self.resource[t]].append(slot)
        if self.events is not None:
            self.events.append((t, d, w, start, now))
        self.done += 1
        freed: list[int] = []
        readers, nbytes, is_output, device, live = (
            self.readers,
            p.nbytes,
            p.is_output,
            p.device,
            self.live,
        )
        for i in p.inputs[t]:
            readers[i] -= 1
            if readers[i] == 0 and not is_output[i]:
                live[device[i]] -= nbytes[i]
                freed.append(i)
        cons = p.consumers[t]
        if not cons:
            if not is_output[t]:
                live[d] -= nbytes[t]
                freed.append(t)
            return freed
        pending = self.pending
        for c in cons:
            pending[c] -= 1
            if pending[c] == 0:
                self._push(c)
        return freed

    @property
    def finished(self) -> bool:
        return self.done == self.plan.ntasks

    def stall_message(self) -> str:
        return f"the run stalled after {self.done} of {self.plan.ntasks} tasks"


def check_placed(tg: TaskGraph, ndev: int) -> None:
    if not tg.placed:
        raise CompileError("the task graph is not placed; call place_tasks first")
    if tg.ndev > ndev:
        raise CompileError(f"the task graph is placed on {tg.ndev} devices, the engine has {ndev}")
