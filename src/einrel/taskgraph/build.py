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

from collections.abc import Mapping, Sequence
from typing import Any

from ..decompose.partition import Box, Partition, intersect
from ..decompose.usage import squeeze_map
from ..errors import CompileError
from ..ir.einsum import Einsum
from ..ir.graph import Graph
from ..ir.relation import support_of
from .ir import Piece, Task, TaskGraph, TaskKind


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
        kind: TaskKind,
        node: int,
        inputs: Sequence[int],
        shape: Sequence[int],
        dtype: str,
        op: Any = None,
        offset: Sequence[int] = (),
    ) -> int:
        support = support_of(self.graph[node])
        t = Task(
            len(self.tasks),
            kind,
            node,
            tuple(inputs),
            tuple(shape),
            dtype,
            -1,
            op,
            tuple(offset),
            support,
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
        if n.op in ("input", "relation"):
            if n.op == "relation" and tuple(sizes) != n.shape:
                raise CompileError(f"relation {n.name} is read whole, not as the block {box}")
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
        if n.op in ("input", "fill", "relation"):
            return
        part = output_partition(self.graph, self.dec, v)
        out: dict[Box, int] = {}
        if n.op == "einsum":
            out = self._einsum(v)
        elif n.op in ("sparse", "densify"):  # one task over whole operands
            ins = [self.gather(u, _whole(self.graph[u].shape)) for u in n.inputs]
            out[_whole(n.shape)] = self.add(n.op, v, ins, n.shape, n.dtype, op=n.attrs)
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
            # An init operand is added once per output block: by its first aggregation block.
            block_op = op.with_sizes(size)
            operands = list(zip(n.inputs, op.inputs))
            if op.init and any(b[nout:]):
                block_op, operands = block_op.body, operands[1:]
            ins = []
            for u, labs in operands:
                ins.append(
                    self.gather(
                        u, (tuple(at[lab] for lab in labs), tuple(size[lab] for lab in labs))
                    )
                )
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


def _whole(shape: Sequence[int]) -> Box:
    return (0,) * len(shape), tuple(shape)


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
