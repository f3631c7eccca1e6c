"""The thread driver: real threads and a real clock around a clock-free scheduling core.

Every engine (local, memory, and each Ray actor's device) runs its work the same way. Each
resource slot of the core (a compute worker, a transfer channel) is one thread, started per run
and joined before the run returns, or, for an engine that keeps `SlotThreads`, one of the
threads it keeps between runs until it is closed. There is no scheduler thread: the thread
that finishes an item books it into the core under one lock and dispatches; a launch onto its
own slot is taken directly (a chain never changes threads), launches onto other slots wake
them. Kernels release the GIL (BLAS, numpy loops, torch), so slots really run in parallel.

What an item is and what running it means is the `Work`'s business; the driver owns the lock,
the wake-ups, the clock (strictly increasing under the lock, so an event log orders every start
and finish exactly as the core processed them) and failure: the first exception, from a kernel
or from the engine itself, stops every slot, and a run in which nothing runs and nothing can
start is reported as stalled instead of hanging.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
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
    def run(self, threads: SlotThreads | None = None) -> float:
        """Start the slots (on `threads` when given, else on new threads), wait until the work
        is finished or failed and every slot has returned; the wall time."""
        work = self.work
        with self.lock:
            self.dispatch()
        if not self.stop:
            jobs = [(work.slot_name(s), lambda s=s: self._work(s)) for s in range(work.nslots)]
            joined = threads.start(jobs) if threads is not None else _start(jobs)
            try:
                self.done.wait()
            finally:
                with self.lock:
                    self.halt()
                joined()
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


Job = tuple[str, Callable[[], None]]  # (thread name, what the thread runs)


def _start(jobs: Sequence[Job]) -> Callable[[], None]:
    """Each job on a new thread; returns the function that joins them."""
    threads = [threading.Thread(target=job, name=name, daemon=True) for name, job in jobs]
    for th in threads:
        th.start()

    def join() -> None:
        for th in threads:
            th.join()

    return join


class SlotThreads:
    """Threads kept from one run to the next, one per slot: starting and joining four threads
    took about 1 ms of a 7.6 ms training step of a small graph on er.cpu(2). Each thread waits
    on its own inbox between runs; `close()` ends them, and so does dropping the owner (they
    hold nothing of it between runs). Not thread-safe: one run at a time."""

    def __init__(self) -> None:
        self._inboxes: list[queue.SimpleQueue[Any]] = []
        self._threads: list[threading.Thread] = []
        self._finalizer = weakref.finalize(self, _post_stop, self._inboxes)

    def start(self, jobs: Sequence[Job]) -> Callable[[], None]:
        """Hand job k to thread k (starting threads as needed); returns the function that
        waits until every job has returned."""
        while len(self._threads) < len(jobs):
            inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
            th = threading.Thread(target=_serve, args=(inbox,), daemon=True)
            th.start()
            self._inboxes.append(inbox)
            self._threads.append(th)
        returned = threading.Semaphore(0)
        for inbox, (name, job) in zip(self._inboxes, jobs):
            inbox.put((name, job, returned))

        def wait() -> None:
            for _ in jobs:
                returned.acquire()

        return wait

    def close(self) -> None:
        """End every thread (they are idle between runs) and wait for them."""
        _post_stop(self._inboxes)
        for th in self._threads:
            th.join()
        self._inboxes.clear()
        self._threads.clear()

    def __len__(self) -> int:
        return len(self._threads)


def _post_stop(inboxes: list[queue.SimpleQueue[Any]]) -> None:
    for inbox in inboxes:
        inbox.put(None)


def _serve(inbox: queue.SimpleQueue[Any]) -> None:
    """A kept thread: run each job posted to `inbox` under its name, until None comes."""
    me = threading.current_thread()
    while True:
        item = inbox.get()
        if item is None:
            return
        me.name, job, returned = item
        del item
        try:
            job()
        finally:
            del job  # nothing of the run stays referenced between runs
            returned.release()
