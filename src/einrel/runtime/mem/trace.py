"""Timelines of memory-graph runs: Chrome trace-event JSON with memory counters, and a PNG of
the device timelines above the bytes each device holds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...memory import MemGraph
from ..trace import KIND_COLORS as TASK_COLORS
from ..trace import kind_legend, node_args, node_label
from .schedule import D2H, H2D, MARKERS, PEER, MemEvent, final_holders

_LANE_NAMES = {H2D: "host -> device", D2H: "device -> host", PEER: "peer in", MARKERS: "markers"}
KIND_COLORS = {
    **TASK_COLORS,
    "touch": "#ff7f0e",
    "evict": "#e377c2",
    "load": "#17becf",
    "fetch": "#9467bd",
}


def _tid(lane: int) -> int:
    return 1000 - lane if lane < 0 else lane


def _kind_block(mg: MemGraph, i: int, fetch: dict[int, Any]) -> tuple[str, int]:
    if i >= len(mg.nodes):
        return "fetch", fetch[i].block
    return mg.nodes[i].kind, mg.nodes[i].block


def memory_curves(
    events: Sequence[MemEvent], mg: MemGraph
) -> dict[int, list[tuple[float, int, int]]]:
    """Per device, (time, device bytes, host bytes) after each change: an alloc reserves its
    region, a free or an evict (when it ends) gives it back; an evict's block is on the host
    from then until a load of it ends."""
    changes: dict[int, list[tuple[float, int, int]]] = {}
    for i, d, _, start, end in events:
        if i >= len(mg.nodes):
            continue
        n = mg.nodes[i]
        size = n.region.size if n.region is not None else 0
        nbytes = mg.taskgraph.tasks[n.block].nbytes
        step = {
            "alloc": (start, size, 0),
            "free": (start, -size, 0),
            "evict": (end, -size, nbytes),
            "load": (end, 0, -nbytes),
        }.get(n.kind)
        if step is not None:
            changes.setdefault(d, []).append(step)
    curves: dict[int, list[tuple[float, int, int]]] = {}
    for d, steps in sorted(changes.items()):
        dev = host = 0
        curve = [(0.0, 0, 0)]
        # At one instant, releases first: a free and the alloc reusing its bytes never overlap.
        for t, dd, dh in sorted(steps, key=lambda s: (s[0], s[1] > 0)):
            dev, host = dev + dd, host + dh
            curve.append((t, dev, host))
        curves[d] = curve
    return curves


def mem_chrome_trace(events: Sequence[MemEvent], mg: MemGraph) -> dict[str, Any]:
    """Trace-event JSON of a memory-graph run: one process per device, one thread per compute
    worker and per channel, marker nodes as instant events, and counter tracks of the bytes
    each device holds and has offloaded to the host."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[int, int]] = set()
    fetch = {f.id: f for f in final_holders(mg)}
    tg = mg.taskgraph
    for i, d, lane, start, end in events:
        if (d, lane) not in seen:
            seen.add((d, lane))
            name = _LANE_NAMES.get(lane, f"worker {lane}")
            out.append(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": d,
                    "tid": _tid(lane),
                    "args": {"name": name},
                }
            )
        kind, block = _kind_block(mg, i, fetch)
        t = tg.tasks[block]
        what = t.kind if kind == "compute" else kind
        ev: dict[str, Any] = {
            "name": f"{what} {node_label(tg, t.node)}",
            "cat": kind,
            "pid": d,
            "tid": _tid(lane),
            "ts": start * 1e6,
            "args": {"mem node": i, "block": block, "bytes": t.nbytes, **node_args(tg, t.node)},
        }
        if lane == MARKERS:
            ev.update(ph="i", s="t")
        else:
            ev.update(ph="X", dur=max(0.0, end - start) * 1e6)
        out.append(ev)
    for d, curve in memory_curves(events, mg).items():
        for t_s, dev, host in curve:
            out.append(
                {
                    "ph": "C",
                    "name": "memory (MiB)",
                    "pid": d,
                    "ts": t_s * 1e6,
                    "args": {"device": dev / 2**20, "offloaded to host": host / 2**20},
                }
            )
    return {"traceEvents": out, "displayTimeUnit": "ms"}


def write_mem_trace(events: Sequence[MemEvent], mg: MemGraph, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(mem_chrome_trace(events, mg)))
    return p


def write_mem_png(
    events: Sequence[MemEvent], mg: MemGraph, path: str | Path, title: str = "memory-planned run"
) -> Path:
    """A PNG: the device timelines (compute, touches, evictions, loads) and below them, per
    device, the bytes held on the device against its budget and the bytes offloaded."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fetch = {f.id: f for f in final_holders(mg)}
    work = [e for e in events if e[2] != MARKERS]
    lanes = sorted({(e[1], e[2] if e[2] >= 0 else 100 - e[2]) for e in work})
    row = {lane: k for k, lane in enumerate(lanes)}
    curves = memory_curves(events, mg)
    end = max((e[4] for e in events), default=0.0)
    scale, unit = (1e3, "ms") if end < 10 else (1.0, "s")
    fig = Figure(figsize=(10, 2.5 + 0.4 * max(1, len(lanes)) + 1.6 * max(1, len(curves))))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        1 + len(curves), 1, height_ratios=[max(2, len(lanes))] + [2] * len(curves)
    )
    ax = fig.add_subplot(grid[0])
    kinds: set[str] = set()
    for i, d, lane, start, stop in work:
        kind, block = _kind_block(mg, i, fetch)
        kind = mg.taskgraph.tasks[block].kind if kind == "compute" else kind
        kinds.add(kind)
        y = row[(d, lane if lane >= 0 else 100 - lane)]
        ax.broken_barh(
            [(start * scale, max(stop - start, 0.0) * scale)],
            (y - 0.4, 0.8),
            facecolors=KIND_COLORS.get(kind, "#7f7f7f"),
            edgecolor="none",
        )
    names = {100 - H2D: "h->d", 100 - D2H: "d->h", 100 - PEER: "peer"}
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels([f"dev {d} " + names.get(w, f"w{w}") for d, w in lanes])
    ax.invert_yaxis()
    ax.set_title(title, loc="left")
    kind_legend(ax, kinds, KIND_COLORS)
    for k, (d, curve) in enumerate(curves.items()):
        mx = fig.add_subplot(grid[k + 1], sharex=ax)
        ts = [c[0] * scale for c in curve] + [end * scale]
        for col, label, color in (
            (1, "reserved on device", "#1f77b4"),
            (2, "offloaded to host", "#d62728"),
        ):
            mib = [c[col] / 2**20 for c in curve]
            mx.step(ts, [*mib, mib[-1]], where="post", label=label, color=color)
        budget = mg.budgets[d] if d < len(mg.budgets) else None
        top = max(max(max(c[1], c[2]) for c in curve), budget or 0)
        if budget is not None:
            mx.axhline(budget / 2**20, color="#555555", linestyle="--", linewidth=1, label="budget")
        mx.set_ylim(0, 1.4 * top / 2**20 or 1)
        mx.set_ylabel(f"dev {d} MiB")
        mx.legend(loc="upper right", fontsize="x-small", frameon=False, ncol=3)
    fig.axes[-1].set_xlabel(f"time ({unit})")
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    return p
