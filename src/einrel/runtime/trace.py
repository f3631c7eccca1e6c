"""Timelines of a run: Chrome trace-event JSON (opens in Perfetto / chrome://tracing) and a
Gantt PNG. Both read the engines' event log, so real and simulated runs look alike."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..taskgraph.ir import TaskGraph
from .core import Event

KIND_COLORS = {
    "input": "#9e9e9e",
    "fill": "#bdbdbd",
    "apply": "#1f77b4",
    "agg": "#ff7f0e",
    "assemble": "#2ca02c",
    "reshape": "#8c564b",
    "move": "#d62728",
}


def _label(tg: TaskGraph | None, t: int) -> tuple[str, str, str]:
    """(event name, kind, node name) of task t: `apply h [bi,ij->bj]` names the user's tensor
    (or `%7`) and, for einsum nodes, the spec."""
    if tg is None:
        return f"t{t}", "task", ""
    task = tg.tasks[t]
    return f"{task.kind} {node_label(tg, task.node)}", task.kind, tg.graph[task.node].name


def node_label(tg: TaskGraph, node: int) -> str:
    """A graph node as trace events show it: its name, and its einsum spec when it has one."""
    n = tg.graph[node]
    if n.op == "sparse":
        return f"{n.name} [{n.attrs.einsum.spec}]"
    return f"{n.name} [{n.einsum.spec}]" if n.op == "einsum" else n.name


def node_args(tg: TaskGraph, node: int) -> dict[str, Any]:
    """What a trace event's args say of its graph node: name, op and the whole einsum."""
    n = tg.graph[node]
    args: dict[str, Any] = {"node": n.name, "op": n.op}
    if n.op in ("einsum", "sparse"):
        args["einsum"] = str(n.attrs)
    return args


def chrome_trace(events: Sequence[Event], tg: TaskGraph | None = None) -> dict[str, Any]:
    """Trace-event JSON object: one process per device, one thread per worker plus one for the
    device's inbound transfer channel, complete ('X') events in microseconds."""
    out: list[dict[str, Any]] = []
    devices = sorted({e[1] for e in events})
    for d in devices:
        out.append(
            {"ph": "M", "name": "process_name", "pid": d, "tid": 0, "args": {"name": f"device {d}"}}
        )
        for w in sorted({e[2] for e in events if e[1] == d}):
            name = "transfer in" if w < 0 else f"worker {w}"
            out.append(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": d,
                    "tid": _tid(w),
                    "args": {"name": name},
                }
            )
    for t, d, w, start, end in events:
        name, kind, node = _label(tg, t)
        args: dict[str, Any] = {"task": t, "kind": kind, "node": node}
        if tg is not None:
            args.update(node_args(tg, tg.tasks[t].node))
            args["bytes"] = tg.tasks[t].nbytes
            args["shape"] = list(tg.tasks[t].shape)
        out.append(
            {
                "ph": "X",
                "name": name,
                "cat": kind,
                "pid": d,
                "tid": _tid(w),
                "ts": start * 1e6,
                "dur": max(0.0, end - start) * 1e6,
                "args": args,
            }
        )
    return {"traceEvents": out, "displayTimeUnit": "ms"}


def _tid(worker: int) -> int:
    return 1000 if worker < 0 else worker


def write_chrome_trace(
    events: Sequence[Event], path: str | Path, tg: TaskGraph | None = None
) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(chrome_trace(events, tg)))
    return p


def kind_legend(ax: Any, kinds: set[str], colors: dict[str, str]) -> None:
    """One row of colour patches above the axes' top right, a patch per kind drawn."""
    from matplotlib.patches import Patch

    handles = [Patch(color=colors.get(k, "#7f7f7f"), label=k) for k in sorted(kinds)]
    if handles:
        ax.legend(
            handles=handles,
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            fontsize="small",
            ncol=len(handles),
            frameon=False,
        )


def write_gantt(
    events: Sequence[Event],
    path: str | Path,
    tg: TaskGraph | None = None,
    title: str = "device timelines",
) -> Path:
    """A PNG with one lane per (device, worker) and per device transfer channel, coloured by kind.
    Uses the Agg canvas directly, so no global matplotlib backend is changed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lanes = sorted({(e[1], e[2] if e[2] >= 0 else 1 << 30) for e in events})
    row = {lane: i for i, lane in enumerate(lanes)}
    fig = Figure(figsize=(10, 1.0 + 0.45 * max(1, len(lanes))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    end = max((e[4] for e in events), default=0.0)
    scale, unit = (1e3, "ms") if end < 10 else (1.0, "s")
    kinds_seen: set[str] = set()
    for t, d, w, start, stop in events:
        _, kind, _ = _label(tg, t)
        kinds_seen.add(kind)
        y = row[(d, w if w >= 0 else 1 << 30)]
        ax.broken_barh(
            [(start * scale, max(stop - start, 0.0) * scale)],
            (y - 0.4, 0.8),
            facecolors=KIND_COLORS.get(kind, "#7f7f7f"),
            edgecolor="none",
        )
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels([f"dev {d} " + ("copy" if w == 1 << 30 else f"w{w}") for d, w in lanes])
    ax.invert_yaxis()
    ax.set_xlabel(f"time ({unit})")
    ax.set_title(title, loc="left")
    kind_legend(ax, kinds_seen, KIND_COLORS)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    return p
