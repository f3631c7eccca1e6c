"""The embedded engine: n logical devices as worker threads in this process (`er.cpu(n)`).

The task-graph core (`core.Core`) decides what runs where; the thread driver (`driver`) runs it
with one thread per resource slot (each compute worker, and one inbound transfer channel per
device), and tasks run through the block executor on numpy blocks.

Cores. OpenBLAS's thread count is process-global: during a run it is set to
`max(1, cores // (ndev * workers_per_device))`, and the core's `max_running` caps concurrently
running compute tasks at the core count, so `cpu(4)` on 2 cores does not oversubscribe. The cap
is a scheduling rule rather than a semaphore: a freed core goes to the best ready task of any
device. Only one engine should run at a time in a process (the BLAS setting is global).

Buffers. Dense blocks that the kernels compute into (applies, joins over relations and their
densifications, aggregations, moves, assembles) get their buffer from the engine's
`BlockPool`, so a repeated step reuses last run's dead blocks instead of faulting in fresh
pages (blocks of `pool_min_bytes` and more): a scatter of a batch's gradient into a 10^6-row
table then costs a fill instead of 65536 page faults. `reuse_buffers=False` allocates every
block anew, and `close()` releases the pool.

Times in the event log are the driver's clock: a task's start is its dispatch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..devices import cores
from ..errors import ExecutionError
from ..ir.relation import support_of
from ..kernels import storage_dtype
from ..kernels.coo import Coo
from ..taskgraph.cost import CostModel
from ..taskgraph.interpret import Runner, run_task
from ..taskgraph.ir import TaskGraph
from .core import Core, Priority, TaskSchedule, make_task_schedule
from .driver import SlotThreads, ThreadDriver, WorkBase
from .engine import RunResult
from .pool import MIN_BYTES, BlockPool

# Task kinds whose rule writes its (dense) block into a given buffer (input and reshape blocks
# are views of a feed or of another block, fills are small).
POOLED = frozenset({"apply", "agg", "move", "assemble", "sparse", "densify"})


class _TaskRun(WorkBase):
    """One run of a placed task graph on the task-graph core: blocks are numpy arrays held in
    `values` until their last reader is done."""

    def __init__(
        self,
        tg: TaskGraph,
        core: Core,
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float],
        runner: Runner,
        pool: BlockPool | None,
        pooled: Sequence[bool],
        out: Mapping[int, np.ndarray] | None = None,
    ) -> None:
        self.tasks = tg.tasks
        self.core = core
        self.nslots = core.nslots
        self.inputs = inputs
        self.variables = variables
        self.runner = runner
        self.pool = pool
        self.pooled = pooled
        self.values: list[Any] = [None] * len(tg.tasks)
        self.assembled, self.in_place = output_places(tg, inputs, out or {})

    def dispatch(self, now: float) -> list[tuple[int, int]]:
        return self.core.dispatch(now)

    def claim(self, t: int, slot: int) -> Any:
        place = self.in_place.get(t)
        if place is not None:
            return place
        if self.pool is None or not self.pooled[t]:
            return None
        task = self.tasks[t]
        return self.pool.take(task.shape, storage_dtype(task.dtype))

    def execute(self, t: int, slot: int, token: Any) -> Any:
        task = self.tasks[t]
        args = [self.values[i] for i in task.inputs]
        return self.runner(task, args, self.inputs, self.variables, out=token)

    def finish(self, t: int, slot: int, result: Any, now: float) -> None:
        values, pool = self.values, self.pool
        values[t] = result
        if pool is not None:
            pool.hold(result)
        for i in self.core.complete(t, slot, now):
            if pool is not None:
                pool.drop(values[i])
            values[i] = None

    @property
    def finished(self) -> bool:
        return self.core.finished

    def slot_name(self, slot: int) -> str:
        return _slot_name(self.core, slot)


def output_places(
    tg: TaskGraph, inputs: Mapping[int, Any], given: Mapping[int, np.ndarray] | None = None
) -> tuple[dict[int, Any], dict[int, np.ndarray]]:
    """The graph outputs whose blocks the kernels can write straight into one new array (each
    block computed by its own task into a window of it: C-contiguous, or any window for the
    dense einsum rule, which writes strided windows with numpy), and those windows by task,
    so no output is copied once more, by one thread, to be assembled.

    A relation output on its feed's keys gets one array of values for all its tuples, and each
    of its blocks (given that whole array) writes its values at its positions when they are a
    run of them; `relation_outputs` then says which outputs came out whole. A dense output
    in `given` (by output position) is written into that array instead of a new one."""
    arrays: dict[int, Any] = {}
    places: dict[int, np.ndarray] = {}
    for k, blocks in enumerate(tg.outputs):
        node = tg.graph[tg.graph.outputs[k]]
        tasks = [tg.tasks[t] for t, _ in blocks]
        sup = support_of(node)
        if sup is not None:
            vshape = node.shape[sup.nkeys :]
            feed = next(inputs[n.id] for n in tg.graph.relations if n.name == sup.relation)
            if sup.order == tuple(range(sup.nkeys)) and all(
                t.kind == "sparse" and t.shape[sup.nkeys :] == vshape and t.id not in places
                for t in tasks
            ):
                vals = np.empty((feed.nnz, *vshape), dtype=storage_dtype(node.dtype))
                arrays[k] = Coo(feed.indices, vals, node.shape)
                places.update({t.id: vals for t in tasks})
            continue
        if node.op == "input" or any(
            t.kind not in POOLED or t.support is not None or t.id in places for t in tasks
        ):
            continue
        out = (given or {}).get(k)
        if out is None:
            out = np.empty(node.shape, dtype=storage_dtype(node.dtype))
        views = {}
        for t, off in blocks:
            view = (
                out[tuple(slice(o, o + s) for o, s in zip(off, tg.tasks[t].shape))] if off else out
            )
            if not view.flags.c_contiguous and tg.tasks[t].kind != "apply":
                break
            views[t] = view
        else:
            arrays[k] = out
            places.update(views)
    return arrays, places


def relation_outputs(
    tg: TaskGraph, assembled: Mapping[int, Any], values: Mapping[int, Any]
) -> dict[int, Any]:
    """`assembled` without the relation outputs some block of which did not write its values
    in place (its tuples were not a run of positions): those are assembled from blocks."""
    out = dict(assembled)
    for k, whole in assembled.items():
        if isinstance(whole, Coo):
            blocks = [values[t] for t, _ in tg.outputs[k]]
            inside = all(np.shares_memory(b.values, whole.values) for b in blocks if b.nnz)
            if not inside or sum(b.nnz for b in blocks) != whole.nnz:
                del out[k]
    return out


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
        reuse_buffers: bool = True,
        pool_min_bytes: int = MIN_BYTES,
    ) -> None:
        if ndev < 1 or workers_per_device < 1:
            raise ValueError(
                f"need ndev >= 1 and workers_per_device >= 1, got {ndev}, {workers_per_device}"
            )
        self.ndev = ndev
        self.workers_per_device = workers_per_device
        self.priority = priority
        self.cost_model = cost_model if cost_model is not None else CostModel.default()
        ncores = cores()
        self.max_running = max_running if max_running is not None else ncores
        self.blas_threads = max(1, ncores // (ndev * workers_per_device))
        self.runner: Runner = runner if runner is not None else run_task
        self.pool = BlockPool(pool_min_bytes) if reuse_buffers else None
        self.threads = SlotThreads()
        self._plan: tuple[TaskGraph, Priority, CostModel, TaskSchedule] | None = None
        self._pooled: tuple[TaskGraph, list[bool]] | None = None
        self._blas: Any = None

    def plan(self, tg: TaskGraph) -> TaskSchedule:
        """The core's view of `tg`, kept for the last graph so repeated runs skip the work."""
        c = self._plan
        if c is None or c[0] is not tg or c[1] != self.priority or c[2] != self.cost_model:
            plan = make_task_schedule(tg, self.ndev, self.priority, self.cost_model.task_seconds)
            c = self._plan = (tg, self.priority, self.cost_model, plan)
        return c[3]

    def pooled(self, tg: TaskGraph) -> list[bool]:
        """Which tasks of `tg` compute into a pool buffer, kept for the last graph."""
        c = self._pooled
        if c is None or c[0] is not tg:
            least = self.pool.min_bytes if self.pool is not None else 0
            c = self._pooled = (
                tg,
                [t.kind in POOLED and t.support is None and t.nbytes >= least for t in tg.tasks],
            )
        return c[1]

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
        out: Mapping[int, np.ndarray] | None = None,
    ) -> RunResult:
        """Execute every task of the placed graph `tg`; `inputs` are whole graph-input arrays by
        node id; dense outputs in place go into the arrays of `out` (by output position) when
        given. Raises ExecutionError naming the task and node if a kernel fails."""
        plan = self.plan(tg)
        core = Core(plan, self.workers_per_device, self.max_running, record=trace)
        pooled = self.pooled(tg)
        run = _TaskRun(tg, core, inputs, dict(variables or {}), self.runner, self.pool, pooled, out)
        driver = ThreadDriver(run)
        try:
            with self._blas_limit():
                wall = driver.run(self.threads)
        finally:
            if self.pool is not None:
                self.pool.end_run()
        if driver.error is not None:
            t, exc = driver.error
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
            assembled=relation_outputs(tg, run.assembled, values),
        )

    def close(self) -> None:
        """Release the buffers and end the threads kept for the next run (a later run starts
        new ones)."""
        if self.pool is not None:
            self.pool.clear()
        self.threads.close()

    def evaluate(self, tg: TaskGraph, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        """Convenience: bind named feeds, run, and tile the graph outputs."""
        from ..frontend.reference import bind_feeds
        from ..taskgraph.interpret import assemble_outputs

        inputs, variables = bind_feeds(tg.graph, feeds)
        res = self.run(tg, inputs, variables)
        return assemble_outputs(tg, res.values, res.assembled)


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
