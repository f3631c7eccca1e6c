"""The block-level IR: tasks over blocks of graph nodes (inputs, fills, einsum applies,
partial aggregations, assembles, reshapes and moves), with the devices they run on
once placed. It prints, validates itself, and is what placers and engines consume."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..errors import CompileError
from ..ir.graph import DTYPE_BYTES, Graph
from ..kernels.coo_slot import layout

TaskKind = Literal[
    "input", "fill", "apply", "agg", "assemble", "reshape", "move", "relation", "sparse", "densify"
]
KINDS: tuple[TaskKind, ...] = get_args(TaskKind)


@dataclass(frozen=True)
class Piece:
    """Copy `size` elements from input `src` at `src_offset` to the block at `dst_offset`."""

    src: int
    src_offset: tuple[int, ...]
    dst_offset: tuple[int, ...]
    size: tuple[int, ...]


@dataclass(frozen=True)
class Tuples:
    """What a relation block holds: at most `capacity` tuples of `nkeys` keys (indices of
    `index_bytes` each, plus their positions in the whole relation), listed in `order` (the
    key dim they are sorted by, or None for the relation's own order)."""

    capacity: int
    nkeys: int
    order: int | None
    index_bytes: int = 8

    def nbytes(self, value_elems: int, value_bytes: int) -> int:
        """Bytes of such a block: a header, then indices, positions and values at capacity
        (`kernels.coo.layout`)."""
        return layout(self.capacity, self.nkeys, self.index_bytes, value_elems, value_bytes)[3]


@dataclass(frozen=True)
class Task:
    """One block operation. `op` is the block Einsum (apply), the Fill (fill), the aggregation
    (agg), the pieces (assemble) or None; `offset` places input/fill blocks in their tensor."""

    id: int
    kind: TaskKind
    node: int
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    dtype: str
    device: int = -1
    op: Any = None
    offset: tuple[int, ...] = ()
    support: Tuples | None = None  # set when the block is a relation (a Coo)

    @property
    def nbytes(self) -> int:
        """Bytes of the block: for a relation, its tuples at capacity (see `Tuples`)."""
        if self.support is not None:
            values = math.prod(self.shape[self.support.nkeys :])
            return self.support.nbytes(values, DTYPE_BYTES[self.dtype])
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]

    @property
    def flops(self) -> float:
        if self.kind in ("apply", "sparse"):
            return float(self.op.flops())
        if self.kind == "agg":
            return float(math.prod(self.shape) * max(0, len(self.inputs) - 1))
        return 0.0


@dataclass(frozen=True)
class TaskGraph:
    """Block tasks in topological (id) order; `outputs[k]` lists (task, offset) blocks that
    tile graph output k. `ndev == 0` means not placed yet."""

    graph: Graph
    tasks: tuple[Task, ...]
    outputs: tuple[tuple[tuple[int, tuple[int, ...]], ...], ...]
    ndev: int = 0
    _consumers: tuple[tuple[int, ...], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        cons: list[list[int]] = [[] for _ in self.tasks]
        for t in self.tasks:
            for i in dict.fromkeys(t.inputs):
                cons[i].append(t.id)
        object.__setattr__(self, "_consumers", tuple(tuple(c) for c in cons))

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i: int) -> Task:
        return self.tasks[i]

    def consumers(self, i: int) -> tuple[int, ...]:
        return self._consumers[i]

    @property
    def placed(self) -> bool:
        return self.ndev > 0

    def to_dot(self) -> str:
        """Graphviz DOT text of the block tasks: one cluster per device (once placed), each
        task labelled with its kind, its tensor's name and its block shape; moves in red."""
        from ..ir.dot import DEVICE_COLORS, digraph, quote

        by_device: dict[int, list[str]] = {}
        for t in self.tasks:
            label = f"{t.kind} {self.graph[t.node].name}\n{list(t.shape)}"
            color = DEVICE_COLORS[t.device % len(DEVICE_COLORS)] if t.device >= 0 else "white"
            style = ', color="#d62728"' if t.kind == "move" else ""
            by_device.setdefault(t.device, []).append(
                f"t{t.id} [label={quote(label)}, fillcolor={quote(color)}{style}];"
            )
        lines: list[str] = []
        for d, nodes in sorted(by_device.items()):
            if d < 0:
                lines += nodes
                continue
            lines.append(f"subgraph cluster_d{d} {{ label={quote(f'device {d}')};")
            lines += ["  " + n for n in nodes]
            lines.append("}")
        for t in self.tasks:
            for i in dict.fromkeys(t.inputs):
                red = ' [color="#d62728"]' if t.kind == "move" else ""
                lines.append(f"t{i} -> t{t.id}{red};")
        return digraph("tasks", lines)

    def stats(self) -> dict[str, Any]:
        """Tasks, flops and bytes per device, and bytes moved between devices."""
        ndev = max(self.ndev, 1)
        per = [{"tasks": 0, "flops": 0.0, "bytes": 0} for _ in range(ndev)]
        moved = 0
        for t in self.tasks:
            d = max(t.device, 0)
            per[d]["tasks"] += 1
            per[d]["flops"] += t.flops
            per[d]["bytes"] += t.nbytes
            if t.kind == "move":
                moved += t.nbytes
        counts = {k: sum(t.kind == k for t in self.tasks) for k in KINDS}
        return {
            "tasks": len(self.tasks),
            "kinds": counts,
            "devices": per,
            "flops": sum(p["flops"] for p in per),
            "bytes_moved": moved,
        }

    def __str__(self) -> str:
        s = self.stats()
        head = (
            f"taskgraph: {s['tasks']} tasks on {self.ndev or 'unplaced'} device(s), "
            f"{s['flops'] / 1e9:.3g} GFLOP, {s['bytes_moved'] / 2**20:.3g} MiB moved"
        )
        lines = [head]
        for t in self.tasks:
            node = self.graph[t.node].name
            where = f" @{t.device}" if t.device >= 0 else ""
            what = {
                "apply": lambda t: str(t.op),
                "agg": lambda t: f"agg[{t.op}]",
                "fill": lambda t: str(t.op),
                "assemble": lambda t: f"assemble[{len(t.op)}]",
            }
            desc = what.get(t.kind, lambda t: t.kind)(t)
            if t.offset:
                desc += f" at {t.offset}"
            ins = ", ".join(f"t{i}" for i in t.inputs)
            lines.append(f"  t{t.id} = {desc}({ins}) {node} {list(t.shape)}{where}")
        return "\n".join(lines)

    def validate(self) -> None:
        """Structural checks: topological ids, shapes, and (when placed) co-location."""
        for t in self.tasks:
            if any(i >= t.id for i in t.inputs):
                raise CompileError(f"task t{t.id} reads a later task: {t.inputs}")
            ins = [self.tasks[i] for i in t.inputs]
            if t.kind == "apply" and tuple(x.shape for x in ins) != t.op.input_shapes:
                raise CompileError(
                    f"task t{t.id}: input shapes {[x.shape for x in ins]} do not match {t.op}"
                )
            if t.kind == "agg" and any(x.shape != t.shape for x in ins):
                raise CompileError(f"task t{t.id}: partial shapes differ from {t.shape}")
            if self.placed and t.kind != "move" and any(x.device != t.device for x in ins):
                raise CompileError(
                    f"task t{t.id} on device {t.device} reads a block on another "
                    f"device: {[(x.id, x.device) for x in ins]}"
                )
