"""The embedded engine: n logical devices as worker threads in this process (`er.cpu(n)`).

Every resource slot of the core (each compute worker, and one inbound transfer channel per
device) is one thread, started per run and joined before `run` returns. There is no scheduler
thread: the worker that finishes a task updates the core under one lock and dispatches; a launch
onto its own slot is taken directly (a chain never changes threads), launches onto other slots wake
them. Kernels release the GIL (BLAS, numpy loops), so devices run in parallel.

Cores. OpenBLAS's thread count is process-global: during a run it is set to
`max(1, cores // (ndev * workers_per_device))`, and the core's `max_running` caps concurrently
running compute tasks at the core count, so `cpu(4)` on 2 cores does not oversubscribe. The cap
is a scheduling rule rather than a semaphore: a freed core goes to the best ready task of any
device. Only one engine should run at a time in a process (the BLAS setting is global).

Times in the event log are taken under the lock and made strictly increasing, so the log orders
every start and finish exactly as the core processed them; a task's start is its dispatch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..devices import cores
from ..errors import ExecutionError
from ..taskgraph.cost import CostModel
from ..taskgraph.interpret import run_task
from ..taskgraph.ir import Task, TaskGraph
from .core import Core, Event, Plan, Priority, make_plan

Runner = Callable[[Task, Sequence[np.ndarray], Mapping[int, np.ndarray], Mapping[str, float]], Any]


@dataclass
class RunResult:
    """What one run produced and cost. `values` holds the blocks listed in `tg.outputs`
    (`assemble_outputs(tg, result.values)` tiles them); `events` is empty unless traced."""

    values: dict[int, np.ndarray]
    wall_time_s: float
    peak_bytes: dict[int, int]
    bytes_moved: int
    bytes_offloaded: int = 0
    busy_s: dict[int, float] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


class _Run:
    """The mutable state of one run, shared by its threads under `lock`."""

    def __init__(
        self,
        tg: TaskGraph,
        core: Core,
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float],
        runner: Runner,
    ) -> None:
        self.tasks = tg.tasks
        self.graph = tg.graph
        self.core = core
        self.inputs = inputs
        self.variables = variables
        self.runner = runner
        self.values: list[Any] = [None] * len(tg.tasks)
        self.lock = threading.Lock()
        self.conds = [threading.Condition(self.lock) for _ in range(core.nslots)]
        self.assigned = [-1] * core.nslots
        self.stop = False
        self.error: tuple[int, BaseException] | None = None
        self.done = threading.Event()
        self.t0 = 0.0
        self.last = 0.0

    def now(self) -> float:
        """Seconds since the run began, strictly increasing (call with the lock held)."""
        t = time.perf_counter() - self.t0
        if t <= self.last:
            t = self.last + 1e-9
        self.last = t
        return t

    def launch(self, launches: list[tuple[int, int]], me: int = -1) -> None:
        assigned, conds = self.assigned, self.conds
        for t, slot in launches:
            assigned[slot] = t
            if slot != me:
                conds[slot].notify()

    def halt(self) -> None:
        self.stop = True
        for c in self.conds:
            c.notify_all()
        self.done.set()

    def fail(self, t: int, exc: BaseException) -> None:
        if self.error is None:
            self.error = (t, exc)
        self.halt()

    def work(self, slot: int) -> None:
        try:
            self._loop(slot)
        except BaseException as exc:  # a bug in the engine itself: stop everyone, never hang
            with self.lock:
                self.fail(-1, exc)

    def _loop(self, slot: int) -> None:
        lock, cond, core, assigned = self.lock, self.conds[slot], self.core, self.assigned
        tasks, values, runner = self.tasks, self.values, self.runner
        inputs, variables = self.inputs, self.variables
        t = -1
        out: Any = None
        while True:
            with lock:
                if self.stop:
                    return
                if t >= 0:
                    values[t] = out
                    now = self.now()
                    for i in core.finish(t, now):
                        values[i] = None
                    if core.finished:
                        self.halt()
                        return
                    self.launch(core.dispatch(now), slot)
                t = assigned[slot]
                while t < 0:
                    cond.wait()
                    if self.stop:
                        return
                    t = assigned[slot]
                assigned[slot] = -1
            task = tasks[t]
            try:
                out = runner(task, [values[i] for i in task.inputs], inputs, variables)
            except BaseException as exc:
                with lock:
                    self.fail(t, exc)
                return


class LocalEngine:
    """Runs placed task graphs on `ndev` logical CPU devices in this process."""

    def __init__(
        self,
        ndev: int,
        workers_per_device: int = 1,
        priority: Priority = "critical-path",
        cost_model: CostModel | None = None,
        max_running: int | None = None,
        runner: Runner | None = None,
    ) -> None:
        if ndev < 1 or workers_per_device < 1:
            raise ValueError(
                f"need ndev >= 1 and workers_per_device >= 1, got {ndev}, {workers_per_device}"
            )
        self.ndev = ndev
        self.workers_per_device = workers_per_device
        self.priority = priority
        self.cost_model = cost_model if cost_model is not None else CostModel.load_or_default()
        ncores = cores()
        self.max_running = max_running if max_running is not None else ncores
        self.blas_threads = max(1, ncores // (ndev * workers_per_device))
        self.runner: Runner = runner if runner is not None else run_task
        self._plan: tuple[TaskGraph, Priority, CostModel, Plan] | None = None
        self._blas: Any = None

    def plan(self, tg: TaskGraph) -> Plan:
        """The core's view of `tg`, kept for the last graph so repeated runs skip the work."""
        c = self._plan
        if c is None or c[0] is not tg or c[1] != self.priority or c[2] != self.cost_model:
            plan = make_plan(tg, self.ndev, self.priority, self.cost_model.task_seconds)
            c = self._plan = (tg, self.priority, self.cost_model, plan)
        return c[3]

    def _blas_limit(self) -> Any:
        if self._blas is None:
            from threadpoolctl import ThreadpoolController

            self._blas = ThreadpoolController()
        return self._blas.limit(limits=self.blas_threads, user_api="blas")

    def run(
        self,
        tg: TaskGraph,
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float] | None = None,
        trace: bool = False,
    ) -> RunResult:
        """Execute every task of the placed graph `tg`; `inputs` are whole graph-input arrays by
        node id. Raises ExecutionError naming the task and node if a kernel fails."""
        plan = self.plan(tg)
        core = Core(plan, self.workers_per_device, self.max_running, record=trace)
        run = _Run(tg, core, inputs, dict(variables or {}), self.runner)
        threads = []
        with self._blas_limit():
            run.t0 = time.perf_counter()
            if plan.ntasks:
                with run.lock:
                    run.launch(core.dispatch(0.0))
                for slot in range(core.nslots):
                    th = threading.Thread(
                        target=run.work, args=(slot,), name=_slot_name(core, slot), daemon=True
                    )
                    th.start()
                    threads.append(th)
                try:
                    run.done.wait()
                finally:
                    with run.lock:
                        run.halt()
                    for th in threads:
                        th.join()
            wall = time.perf_counter() - run.t0
        if run.error is not None:
            t, exc = run.error
            raise _execution_error(tg, t, exc) from exc
        values = {t: run.values[t] for blocks in tg.outputs for t, _ in blocks}
        return RunResult(
            values=values,
            wall_time_s=wall,
            peak_bytes=dict(enumerate(core.peak)),
            bytes_moved=core.bytes_moved,
            bytes_offloaded=0,
            busy_s=dict(enumerate(core.busy)),
            events=core.events or [],
        )

    def evaluate(self, tg: TaskGraph, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        """Convenience: bind named feeds, run, and tile the graph outputs."""
        from ..frontend.reference import bind_feeds
        from ..taskgraph.interpret import assemble_outputs

        inputs, variables = bind_feeds(tg.graph, feeds)
        return assemble_outputs(tg, self.run(tg, inputs, variables).values)


def _slot_name(core: Core, slot: int) -> str:
    compute = core.ndev * core.wpd
    if slot < compute:
        return f"einrel-dev{slot // core.wpd}-w{slot % core.wpd}"
    return f"einrel-dev{slot - compute}-copy"


def _execution_error(tg: TaskGraph, t: int, exc: BaseException) -> ExecutionError:
    if t < 0:
        err = ExecutionError(f"the local engine failed: {type(exc).__name__}: {exc}")
    else:
        task = tg.tasks[t]
        node = tg.graph[task.node]
        err = ExecutionError(
            f"task t{t} ({task.kind}) of node {node.name} on device {task.device} failed: "
            f"{type(exc).__name__}: {exc}"
        )
    return err
