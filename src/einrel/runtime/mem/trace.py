"""Timelines of memory-graph runs as Chrome trace-event JSON."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...memory import MemGraph
from .schedule import D2H, H2D, MARKERS, PEER, MemEvent, final_holders

_LANE_NAMES = {H2D: "host -> device", D2H: "device -> host", PEER: "peer in", MARKERS: "markers"}


def mem_chrome_trace(events: Sequence[MemEvent], mg: MemGraph) -> dict[str, Any]:
    """Trace-event JSON of a memory-graph run: one process per device, one thread per compute
    worker and per channel; marker nodes are instant events."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[int, int]] = set()
    n = len(mg.nodes)
    fetch = {f.id: f for f in final_holders(mg)}
    for i, d, lane, start, end in events:
        if (d, lane) not in seen:
            seen.add((d, lane))
            name = _LANE_NAMES.get(lane, f"worker {lane}")
            out.append(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": d,
                    "tid": 1000 - lane if lane < 0 else lane,
                    "args": {"name": name},
                }
            )
        if i >= n:
            f = fetch[i]
            kind, block = "fetch", f.block
        else:
            kind, block = mg.nodes[i].kind, mg.nodes[i].block
        t = mg.taskgraph.tasks[block]
        label = f"{kind} t{block}" if kind != "compute" else f"{t.kind} t{block}"
        ev: dict[str, Any] = {
            "name": label,
            "cat": kind,
            "pid": d,
            "tid": 1000 - lane if lane < 0 else lane,
            "ts": start * 1e6,
            "args": {"node": i, "block": block, "bytes": t.nbytes},
        }
        if lane == MARKERS:
            ev.update(ph="i", s="t")
        else:
            ev.update(ph="X", dur=max(0.0, end - start) * 1e6)
        out.append(ev)
    return {"traceEvents": out, "displayTimeUnit": "ms"}


def write_mem_trace(events: Sequence[MemEvent], mg: MemGraph, path: str | Path) -> Path:
    import json

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(mem_chrome_trace(events, mg)))
    return p
