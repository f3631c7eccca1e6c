"""Independent checks of an event log: what any correct run of a task graph must satisfy.

Engines account memory incrementally as they go; `peak_from_events` recomputes the same numbers
from the log alone with a sweep over intervals, so a test can compare the two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import ExecutionError
from ..runtime.core import Event
from ..taskgraph.ir import TaskGraph


def live_intervals(tg: TaskGraph, events: Sequence[Event]) -> list[tuple[int, float, float]]:
    """(device, alloc, free) per block: from its task's start to the end of its last reader;
    graph outputs never free; unread blocks free when their own task ends."""
    start = {e[0]: e[3] for e in events}
    end = {e[0]: e[4] for e in events}
    outs = {t for blocks in tg.outputs for t, _ in blocks}
    out = []
    for t in tg.tasks:
        readers = tg.consumers(t.id)
        if t.id in outs:
            free = math.inf
        elif readers:
            free = max(end[c] for c in readers)
        else:
            free = end[t.id]
        out.append((t.device, start[t.id], free))
    return out


def peak_from_events(tg: TaskGraph, events: Sequence[Event]) -> dict[int, int]:
    """Peak live bytes per device; a free and an allocation at the same instant do not
    overlap (half-open intervals)."""
    marks: dict[int, list[tuple[float, int, int]]] = {}
    for (d, a, f), t in zip(live_intervals(tg, events), tg.tasks):
        marks.setdefault(d, []).append((a, 1, t.nbytes))
        if f != math.inf:
            marks[d].append((f, 0, -t.nbytes))
    peak: dict[int, int] = {}
    for d, ms in marks.items():
        live = best = 0
        for _, _, delta in sorted(ms):
            live += delta
            best = max(best, live)
        peak[d] = best
    return peak


def check_events(
    tg: TaskGraph,
    events: Sequence[Event],
    workers_per_device: int = 1,
    max_running: int | None = None,
) -> None:
    """Raise ExecutionError unless the log runs every task once, each after all its inputs
    ended, on its own device (moves: from another device), with no worker doing two things at
    once and never more than `max_running` compute tasks at a time."""
    seen = {e[0]: e for e in events}
    if len(seen) != len(events) or set(seen) != set(range(len(tg.tasks))):
        raise ExecutionError(f"log has {len(events)} events for {len(tg.tasks)} tasks")
    for t in tg.tasks:
        _, d, w, s, e = seen[t.id]
        if d != t.device or e < s:
            raise ExecutionError(f"t{t.id}: event {seen[t.id]} does not fit device {t.device}")
        if (w < 0) != (t.kind == "move") or w >= workers_per_device:
            raise ExecutionError(f"t{t.id} ({t.kind}) ran on worker {w}")
        for i in t.inputs:
            src = seen[i]
            if src[4] > s:
                raise ExecutionError(f"t{t.id} started at {s} before its input t{i} ended")
            if (src[1] != d) != (t.kind == "move"):
                raise ExecutionError(f"t{t.id} on device {d} reads t{i} from device {src[1]}")
    lanes: dict[tuple[int, int], list[tuple[float, float]]] = {}
    points: list[tuple[float, int]] = []
    for _, d, w, s, e in events:
        lanes.setdefault((d, w), []).append((s, e))
        if w >= 0:
            points += [(s, 1), (e, -1)]
    for lane, spans in lanes.items():
        spans.sort()
        for (_, e0), (s1, _) in zip(spans, spans[1:]):
            if s1 < e0:
                raise ExecutionError(f"lane {lane} runs two tasks at once around {s1}")
    if max_running is not None:
        running = 0
        for _, delta in sorted(points):
            running += delta
            if running > max_running:
                raise ExecutionError(f"more than {max_running} compute tasks ran at once")
