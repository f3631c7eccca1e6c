"""The memory engine: runs a `MemGraph` on one preallocated byte arena per device, choosing the
order of ready work at run time (TURNIP's event loop).

Resources. Device d has `workers_per_device` compute workers (compute and touch nodes), an
inbound host channel "h2d" (loads, and the input nodes that bring graph inputs in from host
memory), an outbound host channel "d2h" (evictions, and the copies of resident graph outputs
back to host once they are final) and a "peer" channel for moves between devices. Every slot is
one thread. `alloc`, `free` and `done` markers do no work: they complete the instant they become
ready. A touch also needs its group's lock, so two accumulations into one block never overlap;
the first touch of a group to run copies its partial, later ones accumulate.

Order and memory books are the memory core's (`mem.core`): the same rules drive the simulator.
The thread driver runs one thread per slot.

Transfers. Host channels copy through a `Link`; with `transfer_bandwidth` each copy runs at
that bandwidth times a random factor in [1 - jitter, 1 + jitter], so completion times, and
hence the order the engine picks, differ from run to run. Host buffers for evicted blocks and
for outputs are allocated once per memory graph (the pinned pool on a GPU). A block that is a
graph input is never modified, so evicting it copies nothing (the caller's array is its host
copy) and loading it copies from the caller's array.

`bytes_offloaded` counts the bytes evicted (input blocks included).

The arenas and kernels live in a backend (`runtime.backends`): `NumpyArenas` (one uint8 numpy
buffer per device) or `TorchArenas` (one uint8 torch buffer per device on CUDA, or on CPU
standing in for it); both run nodes through the block executor.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...devices import cores
from ...errors import CompileError, ExecutionError
from ...memory import MemGraph
from ...taskgraph.cost import CostModel
from ...taskgraph.interpret import assemble_outputs
from ..backends.numpy_arenas import NumpyArenas
from ..driver import ThreadDriver, WorkBase
from ..engine import RunResult
from ..transfer import check_jitter, host_links, parse_bandwidth
from .core import MemCore
from .schedule import LANES, MEM_PRIORITIES, MemSchedule, make_schedule


@dataclass
class MemRunResult(RunResult):
    """One run of a memory graph. `values` holds the output blocks (views of engine buffers,
    valid until the next run); `order` lists node ids in the order they started; `events` are
    `MemEvent`s."""

    bytes_loaded: int = 0
    transfer_s: dict[str, float] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    priority: str = ""


class _MemRun(WorkBase):
    """One run of a memory schedule: the memory core plus what executing a node means (the
    backend's arenas, the host links)."""

    def __init__(
        self,
        engine: MemEngine,
        sched: MemSchedule,
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float],
        record: bool,
    ) -> None:
        ndev = sched.ndev
        self.core = MemCore(
            sched, engine.workers_per_device, engine.max_running, engine._rng, record
        )
        self.nslots = self.core.nslots
        self.backend = engine.backend
        self.nodes = sched.mg.nodes
        self.fetches = sched.fetch
        self.inputs = inputs
        self.variables = variables
        seed = engine._rng.randrange(2**62)
        self.links = host_links(ndev, engine.bandwidth, engine.jitter, seed)

    def dispatch(self, now: float) -> list[tuple[int, int]]:
        return self.core.dispatch(now)

    def claim(self, i: int, slot: int) -> bool:
        return self.core.first_of.pop(i, False)

    def execute(self, i: int, slot: int, first: bool) -> None:
        b = self.backend
        link = self.links.get(self.core.slot_res[slot])
        n = len(self.nodes)
        if i >= n:
            assert link is not None
            b.fetch(self.fetches[i - n], link)
            return
        node = self.nodes[i]
        if node.kind == "evict":
            assert link is not None
            b.evict(node, link, self.inputs)
        elif node.kind == "load":
            assert link is not None
            b.load(node, link, self.inputs)
        else:
            b.compute(node, first, self.inputs, self.variables, link)

    def finish(self, i: int, slot: int, result: Any, now: float) -> None:
        self.core.complete(i, slot, now)

    @property
    def finished(self) -> bool:
        return self.core.finished

    def stall_message(self) -> str:
        return self.core.stall_message()

    def slot_name(self, slot: int) -> str:
        core = self.core
        r = core.slot_res[slot]
        lane, d = LANES[r // core.ndev], r % core.ndev
        if lane == "compute":
            return f"einrel-mem-dev{d}-w{slot - d * core.wpd}"
        return f"einrel-mem-dev{d}-{lane}"

    def slot_context(self, slot: int) -> Any:
        r = self.core.slot_res[slot]
        return self.backend.lane_context(r % self.core.ndev, r // self.core.ndev)


class MemEngine:
    """Runs memory graphs on `ndev` devices with arenas of the planned budgets.

    `transfer_bandwidth` ("4GB/s", bytes/s or None) throttles every host transfer of a device
    (each direction its own channel), `jitter` in [0, 1) randomises each transfer's speed,
    `seed` fixes the random streams. `priority` is the default order policy (see MEM_PRIORITIES).
    `backend` holds the arenas and runs the kernels: "numpy" (`NumpyArenas`, the default),
    "torch" (`TorchArenas` on CPU tensors: torch kernels) or an instance.
    """

    def __init__(
        self,
        ndev: int,
        priority: str | Sequence[float] = "given",
        workers_per_device: int = 1,
        transfer_bandwidth: float | str | None = None,
        jitter: float = 0.0,
        seed: int | None = None,
        cost_model: CostModel | None = None,
        max_running: int | None = None,
        backend: Any = None,
        threads_per_worker: int | None = None,
    ) -> None:
        if ndev < 1 or workers_per_device < 1:
            raise CompileError(
                f"need ndev >= 1 and workers_per_device >= 1, got {ndev}, {workers_per_device}"
            )
        if isinstance(priority, str) and priority not in MEM_PRIORITIES:
            raise CompileError(f"unknown priority {priority!r}; expected one of {MEM_PRIORITIES}")
        self.ndev = ndev
        self.workers_per_device = workers_per_device
        self.priority = priority
        self.bandwidth = parse_bandwidth(transfer_bandwidth)
        self.jitter = check_jitter(jitter)
        self.seed = seed
        self._rng = random.Random(seed)
        self.cost_model = cost_model if cost_model is not None else CostModel.default()
        ncores = cores()
        self.max_running = max_running if max_running is not None else ncores
        self.threads = threads_per_worker or max(1, ncores // (ndev * workers_per_device))
        if backend is None or backend == "numpy":
            backend = NumpyArenas()
        elif backend == "torch":
            from ..backends.torch_arenas import TorchArenas

            backend = TorchArenas("cpu")
        elif isinstance(backend, str):
            raise CompileError(f"unknown memory engine backend {backend!r}; use 'numpy' or 'torch'")
        self.backend = backend
        self._sched: dict[tuple[int, Any], MemSchedule] = {}
        self._sched_mg: MemGraph | None = None

    def schedule(self, mg: MemGraph, priority: str | Sequence[float] | None = None) -> MemSchedule:
        """The static schedule of `mg` under `priority` (kept for the last memory graph)."""
        p = self.priority if priority is None else priority
        if self._sched_mg is not mg:
            self._sched, self._sched_mg = {}, mg
        k = p if isinstance(p, str) else tuple(p)
        s = self._sched.get(k)  # type: ignore[arg-type]
        if s is None:
            s = make_schedule(mg, self.ndev, p, self.cost_model, self.bandwidth)
            self._sched[k] = s  # type: ignore[index]
        return s

    def prepare(self, mg: MemGraph) -> None:
        """Allocate the arenas and the host pool for `mg` (done by `run` when needed; call it
        first to keep the allocation out of a timed run)."""
        sched = self.schedule(mg)
        tasks = mg.taskgraph.tasks
        host = {n.block for n in mg.nodes if n.kind == "evict" and tasks[n.block].kind != "input"}
        host |= {f.block for f in sched.fetch}
        host |= {o.block for o in mg.outputs}
        self.backend.prepare(mg, sorted(host))

    def run(
        self,
        mg: MemGraph,
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float] | None = None,
        trace: bool = False,
        priority: str | Sequence[float] | None = None,
    ) -> MemRunResult:
        """Execute every node of `mg`; `inputs` are whole graph-input arrays by node id."""
        sched = self.schedule(mg, priority)
        self.prepare(mg)
        run = _MemRun(self, sched, inputs, dict(variables or {}), record=trace)
        driver = ThreadDriver(run)
        with self.backend.threads(self.threads):
            wall = driver.run()
        if driver.error is not None:
            i, exc = driver.error
            raise _execution_error(mg, sched, i, exc) from exc
        core = run.core
        values = {o.block: self.backend.output(o.block, o.region, inputs) for o in mg.outputs}
        busy = {f"d{r % self.ndev}:{LANES[r // self.ndev]}": k.busy_s for r, k in run.links.items()}
        return MemRunResult(
            values=values,
            wall_time_s=wall,
            peak_bytes=dict(enumerate(core.peak)),
            bytes_moved=core.moved,
            bytes_offloaded=core.offloaded,
            bytes_loaded=core.loaded,
            busy_s=dict(enumerate(core.busy)),
            transfer_s=busy,
            events=core.events or [],
            order=core.order,
            priority=priority if isinstance(priority, str) else str(self.priority),
        )

    def evaluate(
        self, mg: MemGraph, feeds: Mapping[str, Any], priority: str | None = None
    ) -> list[np.ndarray]:
        """Bind named feeds, run, and tile the graph outputs."""
        from ...frontend.reference import bind_feeds

        inputs, variables = bind_feeds(mg.taskgraph.graph, feeds)
        res = self.run(mg, inputs, variables, priority=priority)
        return assemble_outputs(mg.taskgraph, res.values)


def _execution_error(
    mg: MemGraph, sched: MemSchedule, i: int, exc: BaseException
) -> ExecutionError:
    if isinstance(exc, ExecutionError) and i < 0:
        return exc
    if i < 0:
        return ExecutionError(f"the memory engine failed: {type(exc).__name__}: {exc}")
    if i >= len(mg.nodes):
        f = sched.fetch[i - len(mg.nodes)]
        what = f"fetch of output t{f.block} on device {f.device}"
    else:
        n = mg.nodes[i]
        t = mg.taskgraph.tasks[n.block]
        node = mg.taskgraph.graph[t.node].name
        what = (
            f"memory node n{n.id} ({n.kind} of t{n.block}, {t.kind} of node {node}) "
            f"on device {n.device}"
        )
    return ExecutionError(f"{what} failed: {type(exc).__name__}: {exc}")
