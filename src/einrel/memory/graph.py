"""The memory graph: nodes over per-device byte arenas, their dependencies, and orders.

Node ids are the planning order, so every dependency points to a smaller id and
`fixed_order()` is simply `0..n-1`; any other topological order is as valid, which is what
lets an engine pick whatever node is ready.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..errors import CompileError
from ..taskgraph.ir import TaskGraph

NodeKind = Literal["alloc", "free", "evict", "load", "compute", "touch", "done"]
KINDS: tuple[NodeKind, ...] = get_args(NodeKind)


@dataclass(frozen=True)
class Region:
    """`size` bytes reserved at `offset` in device `device`'s arena (size is aligned)."""

    device: int
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size

    def __str__(self) -> str:
        return f"d{self.device}[{self.offset},{self.end})"


@dataclass(frozen=True)
class MemNode:
    """One node of the memory graph.

    `block` is the task whose block the node concerns (for compute, the task it runs; for
    touch/done, the aggregation). `region` is the block's region (alloc/free/evict/load) or the
    region written (compute/touch); `sources`/`reads` are the blocks read and their regions.
    """

    id: int
    kind: NodeKind
    device: int
    block: int
    deps: tuple[int, ...]
    region: Region | None = None
    sources: tuple[int, ...] = ()
    reads: tuple[Region, ...] = ()
    group: int = -1

    @property
    def is_transfer(self) -> bool:
        """Evict and load are asynchronous host transfers; an engine overlaps them."""
        return self.kind in ("evict", "load")

    @property
    def is_marker(self) -> bool:
        """alloc, free and done only order other nodes; they do no work at run time."""
        return self.kind in ("alloc", "free", "done")


@dataclass(frozen=True)
class OutputPlace:
    """Where a graph-output block is at the end: resident (`region`) or offloaded to host."""

    block: int
    device: int
    region: Region | None

    @property
    def on_host(self) -> bool:
        return self.region is None


@dataclass(frozen=True)
class MemStats:
    """Per device: most bytes reserved at once in the planning order, arena high-water mark,
    bytes evicted and loaded; and the number of evict/load nodes."""

    peak_bytes: tuple[int, ...]
    arena_bytes: tuple[int, ...]
    evicted_bytes: tuple[int, ...]
    loaded_bytes: tuple[int, ...]
    evictions: int
    loads: int


@dataclass(frozen=True)
class MemGraph:
    """A memory-planned task graph. Node ids are the planning order, so every dependency has a
    smaller id; `groups` maps an aggregation task to its touch nodes (a run-time lock each)."""

    taskgraph: TaskGraph
    budgets: tuple[int | None, ...]
    alignment: int
    nodes: tuple[MemNode, ...]
    outputs: tuple[OutputPlace, ...]
    stats: MemStats
    groups: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    _succs: tuple[tuple[int, ...], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        succs: list[list[int]] = [[] for _ in self.nodes]
        for n in self.nodes:
            for d in n.deps:
                succs[d].append(n.id)
        object.__setattr__(self, "_succs", tuple(tuple(s) for s in succs))

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, i: int) -> MemNode:
        return self.nodes[i]

    @property
    def ndev(self) -> int:
        return len(self.budgets)

    def successors(self, i: int) -> tuple[int, ...]:
        return self._succs[i]

    def device_nodes(self, device: int) -> tuple[MemNode, ...]:
        """The nodes an engine runs on `device` (a move's compute node is on its destination)."""
        return tuple(n for n in self.nodes if n.device == device)

    def fixed_order(self) -> tuple[int, ...]:
        """The planning order: the fixed-order baseline replays it."""
        return tuple(range(len(self.nodes)))

    def arena_size(self, device: int) -> int:
        """Bytes an engine must reserve for `device`: the plan's high-water mark, at most the
        budget (a generous budget costs nothing; every region lies below the mark)."""
        return self.stats.arena_bytes[device]

    def block_bytes(self, block: int) -> int:
        """Bytes a block really holds (its region may be larger, for alignment)."""
        return self.taskgraph.tasks[block].nbytes

    def validate(self) -> None:
        """Dependencies point to earlier nodes and regions lie inside their arenas."""
        for n in self.nodes:
            if n.kind not in KINDS:
                raise CompileError(f"memory node n{n.id} has unknown kind {n.kind!r}")
            if any(not 0 <= d < n.id for d in n.deps):
                raise CompileError(f"memory node n{n.id} depends on a later node: {n.deps}")
            for r in (n.region, *n.reads):
                if r is not None and (r.offset < 0 or r.end > self.arena_size(r.device)):
                    raise CompileError(f"memory node n{n.id}: region {r} is outside the arena")

    def __str__(self) -> str:
        s = self.stats
        head = (
            f"memgraph: {len(self.nodes)} nodes on {self.ndev} device(s); "
            f"budget {[_fmt_budget(b) for b in self.budgets]}; peak {list(s.peak_bytes)} B; "
            f"evicted {sum(s.evicted_bytes)} B, loaded {sum(s.loaded_bytes)} B"
        )
        lines = [head]
        for d in range(self.ndev):
            lines.append(
                f"device {d} (budget {_fmt_budget(self.budgets[d])}, arena {self.arena_size(d)} B,"
                f" peak {s.peak_bytes[d]} B, evicted {s.evicted_bytes[d]} B):"
            )
            lines.extend("  " + self.describe(n) for n in self.device_nodes(d))
        for o in self.outputs:
            where = "host" if o.region is None else str(o.region)
            lines.append(f"output t{o.block} at {where}")
        return "\n".join(lines)

    def describe(self, n: MemNode) -> str:
        """One readable line for node n."""
        t = self.taskgraph.tasks[n.block]
        r = f"[{n.region.offset},{n.region.end})" if n.region is not None else ""
        if n.kind == "compute":
            name = self.taskgraph.graph[t.node].name
            ins = ", ".join(f"t{b}@{x}" for b, x in zip(n.sources, n.reads))
            what = f"{t.kind} {name} ({ins}) -> {r}"
        elif n.kind == "touch":
            what = f"t{n.block} += t{n.sources[0]}@{n.reads[0]} -> {r} group t{n.group}"
        elif n.kind == "evict":
            what = f"t{n.block} {r} -> host"
        elif n.kind == "load":
            what = f"t{n.block} host -> {r}"
        elif n.kind == "done":
            what = f"t{n.block} group t{n.group} complete"
        else:
            what = f"t{n.block} {r}"
        deps = " ".join(f"n{d}" for d in n.deps)
        return f"n{n.id:<4} {n.kind:<7} {what}" + (f"  <- {deps}" if deps else "")


def _fmt_budget(b: int | None) -> str:
    return "unlimited" if b is None else f"{b} B"


@dataclass
class Frontier:
    """Ready-node bookkeeping for an engine: `ready` holds nodes whose dependencies are all
    done; `complete(i)` marks node i done and returns the nodes it made ready."""

    mg: MemGraph
    waiting: list[int] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.waiting = [len(n.deps) for n in self.mg.nodes]
        self.ready = [i for i, w in enumerate(self.waiting) if w == 0]

    def complete(self, i: int) -> list[int]:
        new = []
        for s in self.mg.successors(i):
            self.waiting[s] -= 1
            if self.waiting[s] == 0:
                new.append(s)
        return new


def random_linear_extension(mg: MemGraph, rng: Any) -> tuple[int, ...]:
    """A random topological order: each time, a uniformly chosen ready node.
    `rng` is a `random.Random` or a `numpy.random.Generator`."""
    pick = rng.randrange if isinstance(rng, random.Random) else lambda n: int(rng.integers(n))
    f = Frontier(mg)
    ready = f.ready
    order: list[int] = []
    while ready:
        k = pick(len(ready))
        ready[k], ready[-1] = ready[-1], ready[k]
        i = ready.pop()
        order.append(i)
        ready.extend(f.complete(i))
    if len(order) != len(mg.nodes):  # pragma: no cover - node ids make a cycle impossible
        raise CompileError("memory graph has a cycle")
    return tuple(order)
