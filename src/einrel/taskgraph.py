"""The block-level task graph, built in two steps, and its interpreter.

`build_tasks(graph, decomposition)` turns every graph node into block tasks, with no devices yet:
- `apply`: the node's einsum on one join block (the same einsum on a smaller join shape);
- `agg`: the group-by step, combining the partials of one output block when an aggregated
  label is split;
- `assemble`: a block built from pieces of other blocks (repartition, slice, concat);
- `reshape`: a block viewed with another shape; `input` / `fill`: leaves, free on any device.
Repartition copies only what consumers need: a required block that is exactly a producer block
is used as it is, anything else is assembled from the intersecting pieces.

`place_tasks(tasks, devices)` then fixes a device per task and makes data movement explicit:
`move` tasks between devices, pieces cut out at the source before they travel, partials summed
on their own device first and only then sent to the aggregation site. Leaves are materialised
on each device that reads them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import kernels
from .decompose.partition import Box, Partition, intersect
from .decompose.usage import squeeze_map
from .einsum import Einsum
from .errors import CompileError, ExecutionError
from .graph import DTYPE_BYTES, Graph

KINDS = ("input", "fill", "apply", "agg", "assemble", "reshape", "move")


@dataclass(frozen=True)
class Piece:
    """Copy `size` elements from input `src` at `src_offset` to the block at `dst_offset`."""

    src: int
    src_offset: tuple[int, ...]
    dst_offset: tuple[int, ...]
    size: tuple[int, ...]


@dataclass(frozen=True)
class Task:
    """One block operation. `op` is the block Einsum (apply), the Fill (fill), the aggregation
    (agg), the pieces (assemble) or None; `offset` places input/fill blocks in their tensor."""

    id: int
    kind: str
    node: int
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    dtype: str
    device: int = -1
    op: Any = None
    offset: tuple[int, ...] = ()

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]

    @property
    def flops(self) -> float:
        if self.kind == "apply":
            return self.op.flops()
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


# ---------------------------------------------------------------------------------------------
# Graph + decomposition -> unplaced task graph
# ---------------------------------------------------------------------------------------------


def output_partition(graph: Graph, decomposition: Mapping[int, Partition], i: int) -> Partition:
    """The partition of node i's output: an einsum's join partition restricted to its output."""
    n = graph[i]
    p = decomposition[i]
    if n.op == "einsum":
        return p.restrict(range(len(n.einsum.output)))
    if n.op == "reshape" and not squeeze_map(graph[n.inputs[0]].shape, n.shape):
        return Partition.whole(n.shape)
    return p


class _Builder:
    def __init__(self, graph: Graph, decomposition: Mapping[int, Partition]) -> None:
        self.graph = graph
        self.dec = decomposition
        self.tasks: list[Task] = []
        self.blocks: dict[int, dict[Box, int]] = {}
        self.memo: dict[tuple[int, Box], int] = {}

    def add(
        self,
        kind: str,
        node: int,
        inputs: Sequence[int],
        shape: Sequence[int],
        dtype: str,
        op: Any = None,
        offset: Sequence[int] = (),
    ) -> int:
        t = Task(
            len(self.tasks), kind, node, tuple(inputs), tuple(shape), dtype, -1, op, tuple(offset)
        )
        self.tasks.append(t)
        return t.id

    def gather(self, u: int, box: Box) -> int:
        """A task whose value is exactly `box` of node u's output."""
        key = (u, box)
        if key in self.memo:
            return self.memo[key]
        n = self.graph[u]
        offs, sizes = box
        if n.op == "input":
            t = self.add("input", u, (), sizes, n.dtype, offset=offs)
        elif n.op == "fill":
            t = self.add("fill", u, (), sizes, n.dtype, op=n.attrs, offset=offs)
        elif box in self.blocks[u]:
            t = self.blocks[u][box]
        else:
            part = output_partition(self.graph, self.dec, u)
            inputs: list[int] = []
            pieces: list[Piece] = []
            for b in part.overlapping(box):
                src = part.box(b)
                inter = intersect(src, box)
                assert inter is not None
                pieces.append(
                    Piece(
                        len(inputs),
                        tuple(a - o for a, o in zip(inter[0], src[0])),
                        tuple(a - o for a, o in zip(inter[0], offs)),
                        inter[1],
                    )
                )
                inputs.append(self.blocks[u][src])
            t = self.add("assemble", u, inputs, sizes, n.dtype, op=tuple(pieces))
        self.memo[key] = t
        return t

    def node(self, v: int) -> None:
        n = self.graph[v]
        if n.op in ("input", "fill"):
            return
        part = output_partition(self.graph, self.dec, v)
        out: dict[Box, int] = {}
        if n.op == "einsum":
            out = self._einsum(v)
        elif n.op == "slice":
            for box in part.boxes():
                offs = tuple(o + s for o, s in zip(box[0], n.attrs.starts))
                out[box] = self.gather(n.inputs[0], (offs, box[1]))
        elif n.op == "concat":
            out = self._concat(v, part)
        elif n.op == "reshape":
            out = self._reshape(v, part)
        else:  # pragma: no cover
            raise CompileError(f"no block rule for {n.op}")
        self.blocks[v] = out

    def _einsum(self, v: int) -> dict[Box, int]:
        n = self.graph[v]
        op: Einsum = n.einsum
        part = self.dec[v]
        labels = op.labels
        nout = len(op.output)
        partials: dict[tuple[int, ...], list[int]] = {}
        for b in part.blocks():
            offs, sizes = part.box(b)
            at = dict(zip(labels, offs))
            size = dict(zip(labels, sizes))
            ins = []
            for u, labs in zip(n.inputs, op.inputs):
                ins.append(
                    self.gather(
                        u, (tuple(at[lab] for lab in labs), tuple(size[lab] for lab in labs))
                    )
                )
            block_op = op.with_sizes(size)
            t = self.add("apply", v, ins, block_op.out_shape, n.dtype, op=block_op)
            partials.setdefault(b[:nout], []).append(t)
        out: dict[Box, int] = {}
        opart = part.restrict(range(nout))
        for ob, ts in partials.items():
            box = opart.box(ob)
            if len(ts) == 1:
                out[box] = ts[0]
            else:
                out[box] = self.add("agg", v, ts, box[1], n.dtype, op=op.agg)
        return out

    def _concat(self, v: int, part: Partition) -> dict[Box, int]:
        n = self.graph[v]
        ax = n.attrs.axis
        out: dict[Box, int] = {}
        for box in part.boxes():
            offs, sizes = box
            ins: list[int] = []
            pieces: list[Piece] = []
            start = 0
            for u in n.inputs:
                width = self.graph[u].shape[ax]
                lo, hi = max(offs[ax], start), min(offs[ax] + sizes[ax], start + width)
                if lo < hi:
                    o = list(offs)
                    s = list(sizes)
                    o[ax], s[ax] = lo - start, hi - lo
                    dst = [0] * len(offs)
                    dst[ax] = lo - offs[ax]
                    pieces.append(Piece(len(ins), (0,) * len(offs), tuple(dst), tuple(s)))
                    ins.append(self.gather(u, (tuple(o), tuple(s))))
                start += width
            if len(ins) == 1:
                out[box] = ins[0]
            else:
                out[box] = self.add("assemble", v, ins, sizes, n.dtype, op=tuple(pieces))
        return out

    def _reshape(self, v: int, part: Partition) -> dict[Box, int]:
        n = self.graph[v]
        src = self.graph[n.inputs[0]]
        dims = squeeze_map(src.shape, n.shape)
        out: dict[Box, int] = {}
        for box in part.boxes():
            if dims is None:
                t = self.gather(src.id, ((0,) * len(src.shape), src.shape))
            else:
                o, s = [0] * len(src.shape), [1] * len(src.shape)
                for d, j in enumerate(dims):
                    if j is not None:
                        o[j], s[j] = box[0][d], box[1][d]
                t = self.gather(src.id, (tuple(o), tuple(s)))
            out[box] = self.add("reshape", v, (t,), box[1], n.dtype)
        return out


def build_tasks(graph: Graph, decomposition: Mapping[int, Partition]) -> TaskGraph:
    """Unplaced block tasks for `graph` under a partition per node."""
    check_decomposition(graph, decomposition)
    b = _Builder(graph, decomposition)
    for n in graph.nodes:
        b.node(n.id)
    outputs = []
    for i in graph.outputs:
        part = output_partition(graph, decomposition, i)
        outputs.append(tuple((b.gather(i, box), box[0]) for box in part.boxes()))
    return TaskGraph(graph, tuple(b.tasks), tuple(outputs))


def check_decomposition(graph: Graph, decomposition: Mapping[int, Partition]) -> None:
    for n in graph.nodes:
        p = decomposition.get(n.id)
        if p is None:
            raise CompileError(f"decomposition has no partition for node {n.name}")
        want = n.einsum.join_shape if n.op == "einsum" else n.shape
        if p.shape != tuple(want):
            what = f"join shape of {n.einsum}" if n.op == "einsum" else "shape"
            raise CompileError(
                f"node {n.name}: partition {p} over {p.shape} does not fit the {what} {tuple(want)}"
            )


# ---------------------------------------------------------------------------------------------
# Unplaced task graph + a device per task -> placed task graph with explicit moves
# ---------------------------------------------------------------------------------------------


def place_tasks(tg: TaskGraph, devices: Sequence[int], ndev: int) -> TaskGraph:
    """Fix a device per task (`devices[t]`, ignored for leaves) and insert the data movement."""
    if ndev < 1:
        raise CompileError(f"need at least one device, got {ndev}")
    if len(devices) != len(tg.tasks):
        raise CompileError(f"placement gives {len(devices)} devices for {len(tg.tasks)} tasks")
    tasks: list[Task] = []
    new: dict[int, int] = {}
    local_memo: dict[tuple[int, int], int] = {}
    cut_memo: dict[tuple[int, Box, int], int] = {}

    def add(t: Task, inputs: Sequence[int], device: int, **kw: Any) -> int:
        nt = Task(
            len(tasks),
            kw.get("kind", t.kind),
            t.node,
            tuple(inputs),
            kw.get("shape", t.shape),
            t.dtype,
            device,
            kw.get("op", t.op),
            t.offset if "kind" not in kw else (),
        )
        tasks.append(nt)
        return nt.id

    def local(old: int, d: int) -> int:
        """The id of a task holding old task's value on device d (a leaf copy or a move)."""
        key = (old, d)
        if key in local_memo:
            return local_memo[key]
        t = tg.tasks[old]
        if t.kind in ("input", "fill"):
            r = add(t, (), d)
        elif tasks[new[old]].device == d:
            return new[old]
        else:
            r = add(t, (new[old],), d, kind="move")
        local_memo[key] = r
        return r

    for t in tg.tasks:
        if t.kind in ("input", "fill"):
            continue
        d = int(devices[t.id])
        if not 0 <= d < ndev:
            raise CompileError(f"task t{t.id} placed on device {d}, outside 0..{ndev - 1}")
        if t.kind == "assemble":
            ins, pieces = [], []
            for p in t.op:
                old = t.inputs[p.src]
                src = tg.tasks[old]
                whole = p.size == src.shape
                if src.kind in ("input", "fill") or whole or tasks[new[old]].device == d:
                    ins.append(local(old, d))
                    pieces.append(p)
                    continue
                key = (old, (p.src_offset, p.size), d)
                if key not in cut_memo:  # cut the piece where it lives, then ship only it
                    e = tasks[new[old]].device
                    cut = add(
                        src,
                        (new[old],),
                        e,
                        kind="assemble",
                        shape=p.size,
                        op=(Piece(0, p.src_offset, (0,) * len(p.size), p.size),),
                    )
                    cut_memo[key] = add(tasks[cut], (cut,), d, kind="move")
                ins.append(cut_memo[key])
                pieces.append(Piece(len(ins) - 1, (0,) * len(p.size), p.dst_offset, p.size))
            pieces = [Piece(i, p.src_offset, p.dst_offset, p.size) for i, p in enumerate(pieces)]
            new[t.id] = add(t, ins, d, op=tuple(pieces))
        elif t.kind == "agg":
            by_dev: dict[int, list[int]] = {}
            for old in t.inputs:
                src = tg.tasks[old]
                e = d if src.kind in ("input", "fill") else tasks[new[old]].device
                by_dev.setdefault(e, []).append(local(old, e) if e == d else new[old])
            ins = []
            for e, ids in sorted(by_dev.items(), key=lambda kv: kv[0] != d):
                if e != d and len(ids) > 1:  # sum co-located partials before they travel
                    ids = [add(t, ids, e)]
                ins.extend(ids if e == d else [add(tasks[ids[0]], (ids[0],), d, kind="move")])
            new[t.id] = ins[0] if len(ins) == 1 else add(t, ins, d)
        else:
            new[t.id] = add(t, [local(i, d) for i in t.inputs], d)
    outputs = []
    for blocks in tg.outputs:
        row = []
        for old, off in blocks:
            if old not in new:  # a leaf that is itself an output
                new[old] = local(old, 0)
            row.append((new[old], off))
        outputs.append(tuple(row))
    placed = TaskGraph(tg.graph, tuple(tasks), tuple(outputs), ndev)
    placed.validate()
    return placed


# ---------------------------------------------------------------------------------------------
# Block interpreter
# ---------------------------------------------------------------------------------------------


def run_task(
    t: Task,
    args: Sequence[np.ndarray],
    inputs: Mapping[int, np.ndarray],
    variables: Mapping[str, float],
) -> np.ndarray:
    """Execute one task on numpy blocks (`inputs` holds whole graph-input arrays by node id)."""
    if t.kind == "input":
        whole = inputs[t.node]
        return np.asarray(
            whole[tuple(slice(o, o + s) for o, s in zip(t.offset, t.shape))], order="C"
        )
    if t.kind == "fill":
        return kernels.fill(t.op, t.shape, t.dtype, t.offset)
    if t.kind == "apply":
        return kernels.einsum(t.op, args, variables, t.dtype)
    if t.kind == "agg":
        acc = np.array(args[0], dtype=kernels.compute_dtype(t.dtype))
        for a in args[1:]:
            acc = kernels.combine(t.op, acc, a)
        return kernels.finish(acc, t.dtype)
    if t.kind == "assemble":
        out = np.empty(t.shape, dtype=kernels.storage_dtype(t.dtype))
        for p in t.op:
            dst = tuple(slice(o, o + s) for o, s in zip(p.dst_offset, p.size))
            src = tuple(slice(o, o + s) for o, s in zip(p.src_offset, p.size))
            out[dst] = args[p.src][src]
        return out
    if t.kind == "reshape":
        return np.asarray(args[0], order="C").reshape(t.shape)
    if t.kind == "move":
        return np.array(args[0], copy=True)
    raise ExecutionError(f"unknown task kind {t.kind!r}")


def assemble_outputs(tg: TaskGraph, value: Mapping[int, np.ndarray]) -> list[np.ndarray]:
    """Tile every graph output from its blocks."""
    results = []
    for k, blocks in enumerate(tg.outputs):
        node = tg.graph[tg.graph.outputs[k]]
        out = np.empty(node.shape, dtype=kernels.storage_dtype(node.dtype))
        for t, off in blocks:
            blk = value[t]
            out[tuple(slice(o, o + s) for o, s in zip(off, blk.shape))] = blk
        results.append(out)
    return results


def interpret_tasks(tg: TaskGraph, feeds: Mapping[str, Any]) -> list[np.ndarray]:
    """Run the task graph sequentially with numpy, keeping one dictionary of blocks per device
    and checking that every task reads only blocks on its own device."""
    from .reference import bind_feeds

    inputs, variables = bind_feeds(tg.graph, feeds)
    stores: dict[int, dict[int, np.ndarray]] = {}
    where: dict[int, int] = {}
    for t in tg.tasks:
        args = []
        for i in t.inputs:
            src = where[i]
            if t.kind != "move" and src != t.device:
                raise ExecutionError(f"task t{t.id} on device {t.device} reads t{i} on {src}")
            args.append(stores[src][i])
        stores.setdefault(t.device, {})[t.id] = run_task(t, args, inputs, variables)
        where[t.id] = t.device
    flat = {i: stores[where[i]][i] for blocks in tg.outputs for i, _ in blocks}
    return assemble_outputs(tg, flat)
