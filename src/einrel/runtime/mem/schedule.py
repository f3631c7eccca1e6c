"""The static schedule of a memory graph: each node's resource (a compute worker or a
host/peer channel of its device), successors and priority keys, derived once per
(memory graph, priority)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, get_args

from ...errors import CompileError
from ...memory import MemGraph, MemNode, Region
from ...taskgraph.cost import CostModel

MemPriority = Literal["given", "critical-path", "bfs", "dfs", "fifo", "random", "fixed", "serial"]
MEM_PRIORITIES: tuple[MemPriority, ...] = get_args(MemPriority)


class Lane(IntEnum):
    """What a memory-graph node occupies: a compute worker, or one channel of its device (host
    to device: loads and graph inputs; device to host: evictions and output fetches; peer:
    moves in from other devices). Markers occupy nothing."""

    MARKER = -1
    COMPUTE = 0
    H2D = 1
    D2H = 2
    PEER = 3


LANES = ("compute", "h2d", "d2h", "peer")  # names by Lane value

# Lane numbers in events: compute workers are 0, 1, ...; channels are -Lane; markers -4.
H2D, D2H, PEER, MARKERS = -Lane.H2D, -Lane.D2H, -Lane.PEER, -4


_CLASS_KEY = {"touch": 100.0, "evict": 100.0, "load": 100.0, "compute": 200.0}


# (node, device, lane, start, end): lane >= 0 is a compute worker, H2D / D2H / PEER a channel;
# nodes >= len(mg) are output fetches (see `MemSchedule.fetch`).
MemEvent = tuple[int, int, int, float, float]


@dataclass(frozen=True)
class Fetch:
    """Copy a graph output that stays resident back to host once its value is final."""

    id: int
    block: int
    device: int
    region: Region
    dep: int
    kind: str = "fetch"


def lane_kind(mg: MemGraph, n: MemNode) -> Lane:
    """The lane node n occupies."""
    if n.is_marker:
        return Lane.MARKER
    if n.kind == "evict":
        return Lane.D2H
    if n.kind == "load":
        return Lane.H2D
    if n.kind == "compute":
        kind = mg.taskgraph.tasks[n.block].kind
        if kind == "input":
            return Lane.H2D
        if kind == "move":
            return Lane.PEER
    return Lane.COMPUTE


def final_holders(mg: MemGraph) -> list[Fetch]:
    """For every output resident at the end: the node after which its value is final there
    (the last compute, done or load of that block). Outputs are never freed, so the region
    stays valid from then on and can be copied to host while the run goes on."""
    last: dict[int, int] = {}
    for n in mg.nodes:
        if n.kind in ("compute", "done", "load"):
            last[n.block] = n.id
    out: list[Fetch] = []
    for o in mg.outputs:
        if o.region is not None:
            out.append(Fetch(len(mg) + len(out), o.block, o.device, o.region, last[o.block]))
    return out


@dataclass(frozen=True)
class MemSchedule:
    """Per-node arrays an engine run needs, derived once per (memory graph, priority)."""

    mg: MemGraph
    ndev: int
    fetch: tuple[Fetch, ...]
    resource: tuple[int, ...]  # lane kind * ndev + device; -1 for markers
    lane: tuple[Lane, ...]
    device: tuple[int, ...]
    deps: tuple[int, ...]  # number of dependencies
    succ: tuple[tuple[int, ...], ...]
    key: tuple[float, ...]
    mode: str  # "static" | "fifo" | "dfs" | "random" | "fixed"

    @property
    def size(self) -> int:
        return len(self.resource)


def node_seconds(mg: MemGraph, model: CostModel, bandwidth: float | None) -> list[float]:
    """Modelled duration of every node: kernels by the cost model, host transfers by the
    link bandwidth (or the copy rate when unthrottled), markers zero."""
    rate = bandwidth if bandwidth is not None else model.copy_bytes_per_s
    out = []
    for n in mg.nodes:
        t = mg.taskgraph.tasks[n.block]
        if n.is_marker:
            s = 0.0
        elif n.kind in ("evict", "load") or (n.kind == "compute" and t.kind == "input"):
            s = t.nbytes / rate
        elif n.kind == "touch":
            s = model.task_overhead_s + math.prod(t.shape) / model.agg_elems_per_s
        else:
            s = model.task_seconds(t)
        out.append(s)
    return out


def make_schedule(
    mg: MemGraph,
    ndev: int,
    priority: str | Sequence[float] = "given",
    model: CostModel | None = None,
    bandwidth: float | None = None,
) -> MemSchedule:
    """Resources, successors and priority keys of `mg` for an engine with `ndev` devices."""
    if mg.ndev > ndev:
        raise CompileError(
            f"the memory graph is planned for {mg.ndev} devices, the engine has {ndev}"
        )
    fetch = tuple(final_holders(mg))
    n = len(mg.nodes)
    size = n + len(fetch)
    lane = [lane_kind(mg, x) for x in mg.nodes] + [Lane.D2H] * len(fetch)
    device = [x.device for x in mg.nodes] + [f.device for f in fetch]
    resource = [-1 if k < 0 else k * ndev + d for k, d in zip(lane, device)]
    deps = [len(x.deps) for x in mg.nodes] + [1] * len(fetch)
    succ: list[list[int]] = [list(mg.successors(i)) for i in range(n)] + [[] for _ in fetch]
    for f in fetch:
        succ[f.dep].append(f.id)
    mode = "static"
    if isinstance(priority, str):
        if priority not in MEM_PRIORITIES:
            raise CompileError(f"unknown priority {priority!r}; expected one of {MEM_PRIORITIES}")
        if priority == "given":
            key = [_CLASS_KEY.get(x.kind, 0.0) for x in mg.nodes] + [100.0] * len(fetch)
            for i in range(n):
                if lane[i] == Lane.H2D:  # host inputs travel like loads
                    key[i] = 100.0
            key = [k * size + i for i, k in enumerate(key)]
        elif priority == "critical-path":
            secs = node_seconds(mg, model or CostModel.default(), bandwidth)
            secs += [0.0] * len(fetch)
            rank = [0.0] * size
            for i in reversed(range(size)):
                rank[i] = secs[i] + max((rank[s] for s in succ[i]), default=0.0)
            key = [-r for r in rank]
        elif priority == "bfs":
            level = [0.0] * size
            for i in range(n):
                for s in succ[i]:
                    level[s] = max(level[s], level[i] + 1.0)
            key = level
        else:
            key = [float(i) for i in range(size)]
            mode = (
                priority if priority in ("fifo", "dfs", "random", "fixed", "serial") else "static"
            )
    else:
        key = [float(k) for k in priority]
        if len(key) == n:
            key += [-math.inf] * len(fetch)
        if len(key) != size:
            raise CompileError(f"priority gives {len(key)} keys for {n} memory nodes")
    return MemSchedule(
        mg,
        ndev,
        fetch,
        tuple(resource),
        tuple(lane),
        tuple(device),
        tuple(deps),
        tuple(tuple(s) for s in succ),
        tuple(key),
        mode,
    )
