"""The thread driver: real threads and a real clock around a clock-free scheduling core.

Every engine (local, memory, and each Ray actor's device) runs its work the same way. Each
resource slot of the core (a compute worker, a transfer channel) is one thread, started per run
and joined before the run returns. There is no scheduler thread: the thread that finishes an
item books it into the core under one lock and dispatches; a launch onto its own slot is taken
directly (a chain never changes threads), launches onto other slots wake them. Kernels release
the GIL (BLAS, numpy loops, torch), so slots really run in parallel.

What an item is and what running it means is the `Work`'s business; the driver owns the lock,
the wake-ups, the clock (strictly increasing under the lock, so an event log orders every start
and finish exactly as the core processed them) and failure: the first exception, from a kernel
or from the engine itself, stops every slot, and a run in which nothing runs and nothing can
start is reported as stalled instead of hanging.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from ..errors import ExecutionError

Launch = tuple[int, int]  # (item, slot)


class Work(Protocol):
    """One run of a core, as the driver sees it. `dispatch`, `claim`, `finish`, `finished` and
    `stall_message` are called with the driver's lock held; `execute` without it."""

    nslots: int

    def dispatch(self, now: float) -> list[Launch]:
        """Start what is ready on free slots; the (item, slot) pairs to run."""
        ...

    def claim(self, item: int, slot: int) -> Any:
        """Anything `execute` needs that must be read under the lock (taken at its start)."""
        ...

    def execute(self, item: int, slot: int, token: Any) -> Any:
        """Run the item; its result goes to `finish`."""
        ...

    def finish(self, item: int, slot: int, result: Any, now: float) -> None:
        """Book a finished item (may raise ExecutionError for a broken rule)."""
        ...

    @property
    def finished(self) -> bool: ...

    def stall_message(self) -> str | None:
        """Why nothing runs and nothing can start, or None when the work is waiting for
        something outside the driver (a block another Ray actor will deliver)."""
        ...

    def slot_name(self, slot: int) -> str: ...

    def slot_context(self, slot: int) -> contextlib.AbstractContextManager[Any]: ...


class WorkBase:
    """Defaults for the optional parts of `Work`."""

    nslots = 0

    def claim(self, item: int, slot: int) -> Any:
        return None

    def stall_message(self) -> str | None:
        return "the run stalled: nothing runs and nothing can start"

    def slot_name(self, slot: int) -> str:
        return f"einrel-slot{slot}"

    @contextlib.contextmanager
    def slot_context(self, slot: int) -> Iterator[None]:
        yield


class ThreadDriver:
    """Drives one `Work` with one thread per slot; `run()` returns the wall time, and the first
    failure is left in `error` as (item, exception) with item -1 for the engine itself."""

    def __init__(self, work: Work) -> None:
        self.work = work
        self.lock = threading.Lock()
        self.conds = [threading.Condition(self.lock) for _ in range(work.nslots)]
        self.assigned = [-1] * work.nslots
        self.inflight = 0
        self.stop = False
        self.error: tuple[int, BaseException] | None = None
        self.done = threading.Event()
        self.t0 = time.perf_counter()  # the clock starts here: events may come before `run`
        self.last = 0.0

    # --- called with the lock held -----------------------------------------------------------
    def now(self) -> float:
        """Seconds since the run began, strictly increasing."""
        t = time.perf_counter() - self.t0
        if t <= self.last:
            t = self.last + 1e-9
        self.last = t
        return t

    def launch(self, launches: Sequence[Launch], me: int = -1) -> None:
        """Hand each item to its slot's thread (the calling slot `me` takes its own)."""
        for item, slot in launches:
            self.assigned[slot] = item
            self.inflight += 1
            if slot != me:
                self.conds[slot].notify()

    def dispatch(self, me: int = -1) -> None:
        """Launch what the work can start now; stop when it is done or stuck."""
        self.launch(self.work.dispatch(self.now()), me)
        if self.work.finished:
            self.halt()
        elif self.inflight == 0:
            why = self.work.stall_message()
            if why is not None:
                self.fail(-1, ExecutionError(why))

    def halt(self) -> None:
        self.stop = True
        for c in self.conds:
            c.notify_all()
        self.done.set()

    def fail(self, item: int, exc: BaseException) -> None:
        if self.error is None:
            self.error = (item, exc)
        self.halt()

    # --- threads -----------------------------------------------------------------------------
    def run(self) -> float:
        """Start the slots, wait until the work is finished or failed; the wall time."""
        work = self.work
        with self.lock:
            self.dispatch()
        threads = []
        if not self.stop:
            for slot in range(work.nslots):
                th = threading.Thread(
                    target=self._work, args=(slot,), name=work.slot_name(slot), daemon=True
                )
                th.start()
                threads.append(th)
            try:
                self.done.wait()
            finally:
                with self.lock:
                    self.halt()
                for th in threads:
                    th.join()
        return time.perf_counter() - self.t0

    def _work(self, slot: int) -> None:
        try:
            with self.work.slot_context(slot):
                self._loop(slot)
        except BaseException as exc:  # a bug in the engine itself: stop everyone, never hang
            with self.lock:
                self.fail(-1, exc)

    def _loop(self, slot: int) -> None:
        lock, cond, work, assigned = self.lock, self.conds[slot], self.work, self.assigned
        item = -1
        result: Any = None
        while True:
            with lock:
                if self.stop:
                    return
                if item >= 0:
                    self.inflight -= 1
                    try:
                        work.finish(item, slot, result, self.now())
                    except Exception as exc:
                        self.fail(item, exc)
                        return
                    result = None
                    self.dispatch(slot)
                    if self.stop:
                        return
                item = assigned[slot]
                while item < 0:
                    cond.wait()
                    if self.stop:
                        return
                    item = assigned[slot]
                assigned[slot] = -1
                token = work.claim(item, slot)
            try:
                result = work.execute(item, slot, token)
            except BaseException as exc:
                with lock:
                    self.fail(item, exc)
                return
