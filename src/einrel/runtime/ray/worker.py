"""One einrel device inside a Ray actor: its part of the plan, run by the shared core.

The actor is threaded (several method calls at once): `execute` runs one device's part of a run
and returns when its tasks are done, while peers call `deliver` (a block they produced for one of
this device's moves) and `ack` (a block this device sent has arrived), and the driver calls
`status` and `abort`. One actor serves every program of its process that uses this device: it
holds each program's plans (with the peer actors of that plan) and runs any number of runs at
once, each under its own run id; a delivery for a run that has not started here yet waits for it.
Programs `attach` and `detach`; the last to detach closes the actor (it refuses new programs
from then on, and that program's engine kills it).

Inside a run, as in the local engine, each resource slot of the core (one compute worker, one
inbound transfer channel) is a thread, and the thread that finishes a task updates the core under
one lock and dispatches. A finished block that other devices read is sent to each of them: a
large one goes to a sender thread, which `ray.put`s it once and hands the reference to each
destination actor, whose move task fetches it on its transfer channel (zero-copy on the same
node, over the network otherwise); a small one (<= INLINE_BYTES) travels inside the `deliver`
call itself and its move lands as soon as it arrives. Either way the destination acknowledges the
landed copy, so the source can stop counting the block. Blocks never pass through the driver.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import ray
from ray.exceptions import GetTimeoutError

from ...devices import cores
from ...taskgraph.interpret import Runner, run_task
from ..driver import ThreadDriver, WorkBase
from .plan import DeviceCore, DevicePart

FETCH_POLL_S = 0.2  # how often a move waiting on a remote block checks for an abort
# Blocks up to this size travel inside the delivering call (Ray inlines small arguments in the
# call itself, `max_direct_call_object_size`, 100 KiB by default); larger ones are `ray.put` once
# and fetched by the destination's move task from the object store.
INLINE_BYTES = 100 * 1024
FINISHED_KEPT = 4096  # ids of finished and aborted runs remembered (late messages are dropped)


class _DeviceRun(WorkBase):
    """One run on this device: the device core plus the messages of a distributed run. The
    driver's lock guards it; peers' `deliver` and `ack` calls take that lock too."""

    def __init__(
        self,
        worker: DeviceWorker,
        part: DevicePart,
        local: dict[int, int],
        peers: Sequence[Any],
        run_id: str,
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float],
        record: bool,
    ) -> None:
        self.runner = worker.runner
        self.part = part
        self.local = local
        self.peers = peers
        self.run_id = run_id
        self.inputs = inputs
        self.variables = variables
        self.core = DeviceCore(part, 1, record)
        self.nslots = self.core.nslots
        self.driver = ThreadDriver(self)
        self.values: list[Any] = [None] * len(part.tasks)
        self.refs: dict[int, Any] = {}
        self.running: dict[int, int] = {}  # slot -> local task id
        self.aborted = False
        self.moved = 0  # bytes actually received from other devices
        self.finished_at = bytearray(len(part.tasks))
        self.outbox: queue.SimpleQueue[tuple[int, Any] | None] = queue.SimpleQueue()

    # --- the work the driver runs (its lock held, except in `execute`) ---------------------
    def dispatch(self, now: float) -> list[tuple[int, int]]:
        """Launch ready tasks, except that a move whose block came inline lands right here:
        its transfer is already done, so the thread that received it completes it."""
        out: list[tuple[int, int]] = []
        launches = self.core.dispatch(now)
        while launches:
            later: list[tuple[int, int]] = []
            for t, slot in launches:
                got = self.refs.get(t)
                if got is not None and got[1] and not self.driver.stop:
                    self.finish(t, slot, got[0], now)
                    later += self.core.dispatch(now)
                else:
                    out.append((t, slot))
            launches = later
        return out

    def claim(self, t: int, slot: int) -> Any:
        self.running[slot] = t
        return None

    def execute(self, t: int, slot: int, token: Any) -> Any:
        if t in self.refs:
            return self._fetch(t)
        task = self.part.tasks[t]
        args = [self.values[i] for i in self.part.args[t]]
        return self.runner(task, args, self.inputs, self.variables)

    def finish(self, t: int, slot: int, out: Any, now: float) -> None:
        """Record that local task t produced `out`: ship or acknowledge it, free dead blocks."""
        part, core, values = self.part, self.core, self.values
        self.running.pop(slot, None)
        self.finished_at[t] = 1
        values[t] = out
        if part.sends[t]:
            self.ship(t, out)
        if t in self.refs:  # a transfer landed: the source may free its block
            self.moved += int(out.nbytes)
            src_dev, src_gid = part.source[t]
            self.peers[src_dev].ack.remote(self.run_id, src_gid)
        for i in core.complete(t, slot, now):
            values[i] = None

    @property
    def finished(self) -> bool:
        return self.core.finished

    def stall_message(self) -> str | None:
        if self.core.waiting_for_peers:
            return None  # a block another device will deliver
        return self.core.stall_message()

    def slot_name(self, slot: int) -> str:
        return f"einrel-ray-dev{self.part.device}-slot{slot}"

    # --- messages from peers (the driver's lock held) ------------------------------------------
    def arrive(self, t: int, payload: Any, inline: bool) -> None:
        """A peer delivered the block gated move t fetches: the array itself when `inline`,
        else a one-element list holding its object reference."""
        if self.driver.stop or t in self.refs:
            return
        self.refs[t] = (payload, inline)
        self.core.release(t)
        self.driver.dispatch()

    def acked(self, t: int) -> None:
        if not self.driver.stop and self.core.remote_done(t):
            self.values[t] = None

    # --- transfers -------------------------------------------------------------------------
    def ship(self, t: int, value: Any) -> None:
        """Send finished block t to the devices that read it (small blocks inline, at once;
        large ones through the sender thread, which puts them in the object store)."""
        if getattr(value, "nbytes", INLINE_BYTES + 1) <= INLINE_BYTES:
            peers, rid = self.peers, self.run_id
            for dst, move in self.part.sends[t]:
                peers[dst].deliver.remote(rid, move, value, True)
        else:
            self.outbox.put((t, value))

    def _fetch(self, t: int) -> Any:
        """The transfer of gated move t: the delivered block, fetched if it is a reference."""
        payload, inline = self.refs[t]
        if inline:
            return payload
        while True:
            try:
                return ray.get(payload[0], timeout=FETCH_POLL_S)
            except GetTimeoutError:
                if self.driver.stop:
                    raise RuntimeError("run aborted while fetching") from None

    def send(self) -> None:
        """Ship finished blocks that other devices read: one `ray.put`, one ref per reader."""
        peers, sends, gids = self.peers, self.part.sends, self.part.gids
        t = -1
        try:
            while True:
                item = self.outbox.get()
                if item is None:
                    return
                t, value = item
                ref = ray.put(value)
                del value
                for dst, move in sends[t]:
                    peers[dst].deliver.remote(self.run_id, move, [ref], False)
        except BaseException as exc:
            with self.driver.lock:
                what = f"sending t{gids[t]}" if t >= 0 else "the sender"
                self.driver.fail(-1, RuntimeError(f"{what} failed: {exc!r}"))


class DeviceWorker:
    """The body of one device actor (wrapped with `ray.remote` by the engine)."""

    def __init__(
        self,
        device: int,
        blas_threads: int | None = None,
        colocated: int = 1,
        runner: Runner | None = None,
    ) -> None:
        """`blas_threads` defaults to this machine's cores over the `colocated` device actors
        that share it."""
        if blas_threads is None:
            blas_threads = max(1, cores() // max(1, colocated))
        self.device = device
        self.runner: Runner = runner if runner is not None else run_task
        self.lock = threading.Lock()
        self.parts: dict[str, tuple[DevicePart, dict[int, int], list[Any]]] = {}
        self.runs: dict[str, _DeviceRun] = {}
        self.ended: OrderedDict[str, None] = OrderedDict()  # finished or aborted run ids
        self.early: dict[str, list[tuple[int, Any, bool]]] = {}
        self.engines: set[str] = set()
        self.closing = False
        self.blas_threads = blas_threads
        from threadpoolctl import ThreadpoolController

        # The actor process is this device's alone: limit its BLAS pool for the actor's life.
        self._blas = ThreadpoolController().limit(limits=blas_threads, user_api="blas")

    # --- setup ---------------------------------------------------------------------------------
    def ready(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {
            "device": self.device,
            "node_id": ctx.get_node_id(),
            "pid": os.getpid(),
            "cores": cores(),
            "blas_threads": self.blas_threads,
        }

    def attach(self, engine: str) -> dict[str, Any] | None:
        """A program starts using this actor; None when it is closing (start another)."""
        with self.lock:
            if self.closing:
                return None
            self.engines.add(engine)
        return self.ready()

    def detach(self, engine: str) -> bool:
        """A program stops using this actor; True when it was the last (the actor closes)."""
        with self.lock:
            self.engines.discard(engine)
            if not self.engines:
                self.closing = True
            return self.closing

    def load(self, key: str, part: DevicePart, peers: Sequence[Any]) -> int:
        """Keep plan `key`: this device's part and the actor of every device of the plan."""
        self.parts[key] = (part, part.local(), list(peers))
        return len(part.tasks)

    def forget(self, key: str) -> None:
        self.parts.pop(key, None)

    def plans(self) -> list[str]:
        return list(self.parts)

    # --- a run ---------------------------------------------------------------------------------
    def execute(
        self,
        key: str,
        run_id: str,
        feeds: Mapping[int, list[Any]],
        variables: Mapping[str, float],
        record: bool = False,
    ) -> dict[str, Any]:
        """Run this device's part of run `run_id`; returns its outputs and measurements."""
        entry = self.parts.get(key)
        if entry is None:
            return self._error(-1, f"plan {key} was never loaded on device {self.device}")
        part, local, peers = entry
        inputs = {n: ray.get(r[0]) for n, r in feeds.items()} if feeds else {}
        with self.lock:
            if run_id in self.ended:
                return {"device": self.device, "aborted": True}
            run = _DeviceRun(self, part, local, peers, run_id, inputs, dict(variables), record)
            t_wall = time.time()
            self.runs[run_id] = run
            early = self.early.pop(run_id, [])
        with run.driver.lock:
            for gid, payload, inline in early:
                run.arrive(local[gid], payload, inline)
        sender = None
        if any(part.sends):
            sender = threading.Thread(target=run.send, name="einrel-send", daemon=True)
            sender.start()
        wall = run.driver.run()
        if sender is not None:
            run.outbox.put(None)
            sender.join()
        with self.lock:
            self.runs.pop(run_id, None)
            self._end(run_id)
        if run.aborted:
            return {"device": self.device, "aborted": True}
        if run.driver.error is not None:
            t, exc = run.driver.error
            tb = "".join(traceback.format_exception(exc))
            return self._error(part.gids[t] if t >= 0 else -1, f"{type(exc).__name__}: {exc}", tb)
        core = run.core
        events = []
        if core.events:
            gids = part.gids
            events = [(gids[t], self.device, w, s, e) for t, _, w, s, e in core.events]
        return {
            "device": self.device,
            "values": {part.gids[i]: run.values[i] for i in part.outputs},
            "peak": core.peak[0],
            "moved": run.moved,
            "modelled_moved": core.bytes_moved,
            "busy": core.busy[0],
            "events": events,
            "t0_wall": t_wall,
            "wall": wall,
        }

    def _end(self, run_id: str) -> None:
        """Remember that `run_id` is over here (called with the lock held)."""
        self.ended[run_id] = None
        self.early.pop(run_id, None)
        while len(self.ended) > FINISHED_KEPT:
            self.ended.popitem(last=False)

    def _error(self, gid: int, message: str, tb: str = "") -> dict[str, Any]:
        return {"device": self.device, "error": (gid, message, tb)}

    def deliver(self, run_id: str, gid: int, payload: Any, inline: bool) -> None:
        """A peer produced the block that move `gid` of run `run_id` fetches (the array when
        `inline`, else `[ref]`: nested, so Ray leaves the fetch to the move task)."""
        with self.lock:
            run = self.runs.get(run_id)
            if run is None:
                if run_id not in self.ended:
                    self.early.setdefault(run_id, []).append((gid, payload, inline))
                return
        with run.driver.lock:
            run.arrive(run.local[gid], payload, inline)

    def ack(self, run_id: str, gid: int) -> None:
        with self.lock:
            run = self.runs.get(run_id)
        if run is not None:
            with run.driver.lock:
                run.acked(run.local[gid])

    def status(self, run_id: str | None = None) -> dict[str, Any]:
        """What this device is doing in run `run_id` (None: in any one run now going):
        running tasks (global ids) and tasks done."""
        with self.lock:
            if run_id is None:
                run_id = next(iter(self.runs), "")
            run = self.runs.get(run_id)
        if run is None:
            return {"device": self.device, "run": run_id, "running": [], "done": -1}
        with run.driver.lock:
            gids = run.part.gids
            waiting = run.finished_at.find(0)
            return {
                "device": self.device,
                "run": run_id,
                "running": sorted(gids[t] for t in run.running.values()),
                "waiting": gids[waiting] if waiting >= 0 else -1,
                "done": run.core.done,
                "ntasks": len(gids),
            }

    def abort(self, run_id: str) -> None:
        """Stop run `run_id` (and make it return at once if it has not started yet)."""
        with self.lock:
            run = self.runs.get(run_id)
            self._end(run_id)
        if run is not None:
            with run.driver.lock:
                run.aborted = True
                run.driver.halt()
