"""The memory engine: runs a `MemGraph` on one preallocated byte arena per device, choosing the
order of ready work at run time (TURNIP's event loop).

Resources. Device d has `workers_per_device` compute workers (compute and touch nodes), an
inbound host channel "h2d" (loads, and the input nodes that bring graph inputs in from host
memory), an outbound host channel "d2h" (evictions, and the copies of resident graph outputs
back to host once they are final) and a "peer" channel for moves between devices. Every slot is
one thread. `alloc`, `free` and `done` markers do no work: they complete the instant they become
ready. A touch also needs its group's lock, so two accumulations into one block never overlap;
the first touch of a group to run copies its partial, later ones accumulate.

Order. Whenever a slot is free it takes the best ready node of its resource under the priority:
"given" (TURNIP's classes: touch, evict, load and host inputs before other compute, then the
planning order), "critical-path" (longest remaining path of modelled node times), "bfs"
(shallowest first), "dfs" (last made ready first), "fifo" (first made ready first), "random"
(a fresh random key per node and run), or explicit keys per node. "fixed" is the baseline: each
resource runs its nodes strictly in the planning order (`MemGraph.fixed_order()`), waiting for
the next one even when later ones are ready; evictions and loads still overlap compute.
"serial" replays the planning order one node at a time, nothing overlapping.

Transfers. Host channels copy through a `Link`; with `transfer_bandwidth` each copy runs at
that bandwidth times a random factor in [1 - jitter, 1 + jitter], so completion times, and
hence the order the engine picks, differ from run to run. Host buffers for evicted blocks and
for outputs are allocated once per memory graph (the pinned pool on a GPU). A block that is a
graph input is never modified, so evicting it copies nothing (the caller's array is its host
copy) and loading it copies from the caller's array.

Memory. Bytes in use per device rise at an `alloc` and fall at a `free` or when an `evict` has
finished copying; `peak_bytes` is the exact maximum. Every allocation is checked against the
live regions of its arena (no overlap, inside the arena), so a bad plan fails loudly instead of
corrupting data. `bytes_offloaded` counts the bytes evicted (input blocks included).

The arenas and kernels live in a backend (`runtime.backends`): `NumpyArenas` (one uint8 numpy
buffer per device) or `TorchArenas` (one uint8 torch buffer per device on CUDA, or on CPU
standing in for it); both run nodes through the block executor.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Any

import numpy as np

from ...devices import cores
from ...errors import CompileError, ExecutionError
from ...memory import MemGraph, MemNode, Region
from ...taskgraph.cost import CostModel
from ...taskgraph.interpret import assemble_outputs
from ..backends.numpy_arenas import NumpyArenas
from ..transfer import Link, check_jitter, parse_bandwidth
from .schedule import LANES, PRIORITIES, MemEvent, MemSchedule, make_schedule


@dataclass
class MemRunResult:
    """One run of a memory graph. `values` holds the output blocks (views of engine buffers,
    valid until the next run); `order` lists node ids in the order they started."""

    values: dict[int, np.ndarray]
    wall_time_s: float
    peak_bytes: dict[int, int]
    bytes_moved: int
    bytes_offloaded: int
    bytes_loaded: int = 0
    busy_s: dict[int, float] = field(default_factory=dict)
    transfer_s: dict[str, float] = field(default_factory=dict)
    events: list[MemEvent] = field(default_factory=list)
    order: list[int] = field(default_factory=list)
    priority: str = ""


class _Run:
    def __init__(
        self,
        engine: MemEngine,
        sched: MemSchedule,
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float],
        record: bool,
    ) -> None:
        mg = sched.mg
        self.engine = engine
        self.backend = engine.backend
        self.sched = sched
        self.mg = mg
        self.nodes = mg.nodes
        self.inputs = inputs
        self.variables = variables
        ndev, wpd = sched.ndev, engine.workers_per_device
        self.ndev = ndev
        self.wpd = wpd
        nres = 4 * ndev
        # slots: compute workers device by device, then one slot per channel resource
        self.slot_res = [d for d in range(ndev) for _ in range(wpd)] + list(range(ndev, nres))
        self.nslots = len(self.slot_res)
        self.free: list[list[int]] = [[] for _ in range(nres)]
        for s in reversed(range(self.nslots)):
            self.free[self.slot_res[s]].append(s)
        self.heaps: list[list[tuple[float, int]]] = [[] for _ in range(nres)]
        self.waiting = list(sched.deps)
        self.mode = sched.mode
        self.key = list(sched.key)
        if self.mode == "random":
            rng = random.Random(engine._rng.random())
            self.key = [rng.random() for _ in self.key]
        self.seq = 0
        self.serial_next = 0  # "serial": the next node of the whole planning order
        if self.mode == "fixed":
            self.order_of: list[list[int]] = [[] for _ in range(nres)]
            for i, r in enumerate(sched.resource):
                if r >= 0:
                    self.order_of[r].append(i)
            self.next_pos = [0] * nres
        self.group_held: set[int] = set()
        self.blocked: dict[int, list[int]] = {}
        self.touched: dict[int, int] = {}
        self.max_running = engine.max_running
        self.running = 0
        self.inflight = 0
        self.used = [0] * ndev
        self.peak = [0] * ndev
        self.spans: list[list[tuple[int, int, int]]] = [[] for _ in range(ndev)]
        self.arena = [mg.arena_size(d) for d in range(mg.ndev)] + [0] * (ndev - mg.ndev)
        self.busy = [0.0] * ndev
        self.start_at = [0.0] * sched.size
        self.first_of: dict[int, bool] = {}
        self.assigned = [-1] * self.nslots
        self.lock = threading.Lock()
        self.conds = [threading.Condition(self.lock) for _ in range(self.nslots)]
        self.stop = False
        self.error: tuple[int, BaseException] | None = None
        self.finished = threading.Event()
        self.done = 0
        self.events: list[MemEvent] | None = [] if record else None
        self.order: list[int] = []
        self.t0 = 0.0
        self.last = 0.0
        self.offloaded = 0
        self.loaded = 0
        self.moved = 0
        bw, jit, seed = engine.bandwidth, engine.jitter, engine._rng.randrange(2**62)
        self.links = {
            r: Link(bw, jit, seed + r) for r in range(ndev, 3 * ndev)
        }  # h2d and d2h channels

    # --- clock -------------------------------------------------------------------------------
    def now(self) -> float:
        t = time.perf_counter() - self.t0
        if t <= self.last:
            t = self.last + 1e-9
        self.last = t
        return t

    # --- readiness ---------------------------------------------------------------------------
    def ready(self, i: int, now: float) -> None:
        """Node i has no unmet dependencies: run it inline if it is a marker, else queue it."""
        stack = [i]
        sched = self.sched
        while stack:
            j = stack.pop()
            r = sched.resource[j]
            if r >= 0:
                self._push(j, r)
                continue
            self._marker(self.nodes[j])
            self.done += 1
            self.order.append(j)
            if self.events is not None:
                self.events.append((j, sched.device[j], -4, now, now))
            for s in sched.succ[j]:
                self.waiting[s] -= 1
                if self.waiting[s] == 0:
                    stack.append(s)

    def _push(self, i: int, r: int) -> None:
        mode = self.mode
        if mode == "fifo":
            self.seq += 1
            heappush(self.heaps[r], (self.seq, i))
        elif mode == "dfs":
            self.seq += 1
            heappush(self.heaps[r], (-self.seq, i))
        else:
            heappush(self.heaps[r], (self.key[i], i))

    def _marker(self, n: MemNode) -> None:
        if n.kind == "alloc":
            r = n.region
            assert r is not None
            self._claim(n, r)
        elif n.kind == "free":
            assert n.region is not None
            self._release(n, n.region)
        elif n.kind == "done":
            want = len(self.mg.groups[n.group])
            if self.touched.get(n.group, 0) != want:
                raise ExecutionError(
                    f"memory node n{n.id}: group t{n.group} completed after "
                    f"{self.touched.get(n.group, 0)} of {want} touches"
                )

    def _claim(self, n: MemNode, r: Region) -> None:
        d = r.device
        if r.offset < 0 or r.end > self.arena[d]:
            raise ExecutionError(
                f"memory node n{n.id}: region {r} is outside device {d}'s arena of "
                f"{self.arena[d]} bytes"
            )
        spans = self.spans[d]
        k = bisect.bisect_left(spans, (r.offset, r.end, n.block))
        for j in (k - 1, k):
            if 0 <= j < len(spans) and spans[j][0] < r.end and r.offset < spans[j][1]:
                o = spans[j]
                raise ExecutionError(
                    f"memory node n{n.id}: region {r} for t{n.block} overlaps live t{o[2]} at "
                    f"[{o[0]},{o[1]}) -- the memory graph is missing an ordering edge"
                )
        spans.insert(k, (r.offset, r.end, n.block))
        self.used[d] += r.size
        if self.used[d] > self.peak[d]:
            self.peak[d] = self.used[d]

    def _release(self, n: MemNode, r: Region) -> None:
        spans = self.spans[r.device]
        k = bisect.bisect_left(spans, (r.offset, r.end, n.block))
        if k >= len(spans) or spans[k] != (r.offset, r.end, n.block):
            raise ExecutionError(f"memory node n{n.id}: t{n.block} is not live at {r}")
        del spans[k]
        self.used[r.device] -= r.size

    # --- dispatch ----------------------------------------------------------------------------
    def _eligible(self, r: int) -> int:
        """The node resource r would start now, or -1 (parking touches whose lock is taken)."""
        h = self.heaps[r]
        if self.mode == "serial":
            while self.serial_next < self.sched.size and self.sched.resource[self.serial_next] < 0:
                self.serial_next += 1  # markers are done inline
            if self.inflight or not h or h[0][1] != self.serial_next:
                return -1
            return h[0][1]
        if self.mode == "fixed":
            seq, pos = self.order_of[r], self.next_pos[r]
            if not h or pos >= len(seq) or h[0][1] != seq[pos]:
                return -1
            i = h[0][1]
            n = self.nodes[i] if i < len(self.nodes) else None
            if n is not None and n.kind == "touch" and n.group in self.group_held:
                return -1
            return i
        while h:
            i = h[0][1]
            n = self.nodes[i] if i < len(self.nodes) else None
            if n is not None and n.kind == "touch" and n.group in self.group_held:
                heappop(h)
                self.blocked.setdefault(n.group, []).append(i)
                continue
            return i
        return -1

    def _start(self, i: int, r: int, now: float, out: list[tuple[int, int]]) -> None:
        heappop(self.heaps[r])
        if self.mode == "fixed":
            self.next_pos[r] += 1
        elif self.mode == "serial":
            self.serial_next = i + 1
        slot = self.free[r].pop()
        if i < len(self.nodes):
            n = self.nodes[i]
            if n.kind == "touch":
                self.group_held.add(n.group)
                c = self.touched.get(n.group, 0)
                self.first_of[i] = c == 0
                self.touched[n.group] = c + 1
        if r < self.ndev:
            self.running += 1
        self.inflight += 1
        self.start_at[i] = now
        self.order.append(i)
        self.assigned[slot] = i
        out.append((i, slot))

    def dispatch(self, now: float) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        ndev = self.ndev
        for r in range(ndev, 4 * ndev):  # channels
            if self.free[r]:
                i = self._eligible(r)
                if i >= 0:
                    self._start(i, r, now, out)
        cap = self.max_running
        while self.running < cap:
            best, bkey = -1, None
            for r in range(ndev):
                if not self.free[r]:
                    continue
                i = self._eligible(r)
                if i < 0:
                    continue
                k = self.heaps[r][0]
                if bkey is None or k < bkey:
                    best, bkey = r, k
            if best < 0:
                break
            self._start(bkey[1], best, now, out)  # type: ignore[index]
        return out

    def complete(self, i: int, slot: int, now: float) -> None:
        sched = self.sched
        r = self.slot_res[slot]
        d = sched.device[i]
        self.free[r].append(slot)
        self.inflight -= 1
        if r < self.ndev:
            self.running -= 1
            self.busy[d] += now - self.start_at[i]
        if self.events is not None:
            lane = slot - d * self.wpd if r < self.ndev else -(r // self.ndev)
            self.events.append((i, d, lane, self.start_at[i], now))
        if i < len(self.nodes):
            n = self.nodes[i]
            if n.kind == "evict":
                assert n.region is not None
                self._release(n, n.region)
                self.offloaded += self.mg.block_bytes(n.block)
            elif n.kind == "load":
                self.loaded += self.mg.block_bytes(n.block)
            elif n.kind == "touch":
                self.group_held.discard(n.group)
                for j in self.blocked.pop(n.group, ()):
                    self._push(j, sched.resource[j])
            elif sched.lane[i] == 3:
                self.moved += self.mg.block_bytes(n.block)
        self.done += 1
        for s in sched.succ[i]:
            self.waiting[s] -= 1
            if self.waiting[s] == 0:
                self.ready(s, now)

    # --- threads -----------------------------------------------------------------------------
    def halt(self) -> None:
        self.stop = True
        for c in self.conds:
            c.notify_all()
        self.finished.set()

    def launch(self, launches: list[tuple[int, int]], me: int = -1) -> None:
        for _, slot in launches:
            if slot != me:
                self.conds[slot].notify()

    def check_end(self) -> None:
        """Stop when every node is done, or fail when nothing runs and nothing can start."""
        if self.done == self.sched.size:
            self.halt()
        elif self.inflight == 0:
            self.error = self.error or (-1, ExecutionError(self._stall_message()))
            self.halt()

    def _stall_message(self) -> str:
        left = [i for i, w in enumerate(self.waiting) if w > 0][:5]
        return (
            f"the memory engine stalled after {self.done} of {self.sched.size} nodes "
            f"(waiting: {left}); the memory graph has a cycle or a lost dependency"
        )

    def work(self, slot: int) -> None:
        r = self.slot_res[slot]
        lane = r // self.ndev
        device = r % self.ndev
        try:
            with self.backend.lane_context(device, lane):
                self._loop(slot, r)
        except BaseException as exc:  # a bug in the engine itself: stop everyone, never hang
            with self.lock:
                if self.error is None:
                    self.error = (-1, exc)
                self.halt()

    def _loop(self, slot: int, r: int) -> None:
        lock, cond = self.lock, self.conds[slot]
        link = self.links.get(r)
        i = -1
        while True:
            with lock:
                if self.stop:
                    return
                if i >= 0:
                    now = self.now()
                    try:
                        self.complete(i, slot, now)
                    except ExecutionError as exc:
                        self.error = self.error or (i, exc)
                        self.halt()
                        return
                    self.launch(self.dispatch(now), slot)
                    self.check_end()
                    if self.stop:
                        return
                i = self.assigned[slot]
                while i < 0:
                    cond.wait()
                    if self.stop:
                        return
                    i = self.assigned[slot]
                self.assigned[slot] = -1
                first = self.first_of.pop(i, False)
            try:
                self._execute(i, first, link)
            except BaseException as exc:
                with lock:
                    if self.error is None:
                        self.error = (i, exc)
                    self.halt()
                return

    def _execute(self, i: int, first: bool, link: Link | None) -> None:
        b = self.backend
        if i >= len(self.nodes):
            assert link is not None
            b.fetch(self.sched.fetch[i - len(self.nodes)], link)
            return
        n = self.nodes[i]
        if n.kind == "evict":
            assert link is not None
            b.evict(n, link, self.inputs)
        elif n.kind == "load":
            assert link is not None
            b.load(n, link, self.inputs)
        else:
            b.compute(n, first, self.inputs, self.variables, link)


class MemEngine:
    """Runs memory graphs on `ndev` devices with arenas of the planned budgets.

    `transfer_bandwidth` ("4GB/s", bytes/s or None) throttles every host transfer of a device
    (each direction its own channel), `jitter` in [0, 1) randomises each transfer's speed,
    `seed` fixes the random streams. `priority` is the default order policy (see PRIORITIES).
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
        if isinstance(priority, str) and priority not in PRIORITIES:
            raise CompileError(f"unknown priority {priority!r}; expected one of {PRIORITIES}")
        self.ndev = ndev
        self.workers_per_device = workers_per_device
        self.priority = priority
        self.bandwidth = parse_bandwidth(transfer_bandwidth)
        self.jitter = check_jitter(jitter)
        self.seed = seed
        self._rng = random.Random(seed)
        self.cost_model = cost_model if cost_model is not None else CostModel.load_or_default()
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
        run = _Run(self, sched, inputs, dict(variables or {}), record=trace)
        threads = []
        with self.backend.threads(self.threads):
            run.t0 = time.perf_counter()
            with run.lock:
                for i in range(sched.size):
                    if sched.deps[i] == 0:
                        run.ready(i, 0.0)
                run.dispatch(0.0)
                run.check_end()
            if not run.stop:
                for slot in range(run.nslots):
                    th = threading.Thread(
                        target=run.work, args=(slot,), name=_slot_name(run, slot), daemon=True
                    )
                    th.start()
                    threads.append(th)
                try:
                    run.finished.wait()
                finally:
                    with run.lock:
                        run.halt()
                    for th in threads:
                        th.join()
            wall = time.perf_counter() - run.t0
        if run.error is not None:
            i, exc = run.error
            raise _execution_error(mg, sched, i, exc) from exc
        values = {o.block: self.backend.output(o.block, o.region, inputs) for o in mg.outputs}
        busy = {f"d{r % self.ndev}:{LANES[r // self.ndev]}": k.busy_s for r, k in run.links.items()}
        return MemRunResult(
            values=values,
            wall_time_s=wall,
            peak_bytes=dict(enumerate(run.peak)),
            bytes_moved=run.moved,
            bytes_offloaded=run.offloaded,
            bytes_loaded=run.loaded,
            busy_s=dict(enumerate(run.busy)),
            transfer_s=busy,
            events=run.events or [],
            order=run.order,
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


def _slot_name(run: _Run, slot: int) -> str:
    r = run.slot_res[slot]
    lane, d = LANES[r // run.ndev], r % run.ndev
    if lane == "compute":
        return f"einrel-mem-dev{d}-w{slot - d * run.wpd}"
    return f"einrel-mem-dev{d}-{lane}"


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
