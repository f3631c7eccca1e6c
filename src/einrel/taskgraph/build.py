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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..decompose.partition import Box, Partition, intersect
from ..decompose.usage import squeeze_map
from ..errors import CompileError
from ..ir.einsum import Einsum
from ..ir.graph import GNode, Graph
from ..ir.relation import support_of
from ..kernels.coo import block_order, capacity, index_dtype
from .ir import Piece, Task, TaskGraph, TaskKind, Tuples


def output_partition(graph: Graph, decomposition: Mapping[int, Partition], i: int) -> Partition:
    """The partition of node i's output: an einsum's join partition restricted to its output."""
    n = graph[i]
    p = decomposition[i]
    if n.op in ("einsum", "sparse"):
        return p.restrict(range(len(join_of(n).output)))
    if n.op == "reshape" and not squeeze_map(graph[n.inputs[0]].shape, n.shape):
        return Partition.whole(n.shape)
    return p


ANY = -1  # a relation block read in whatever order it is made


def join_of(n: GNode) -> Einsum:
    """The einsum of an einsum node or of an einsum over a relation."""
    return n.attrs.einsum if n.op == "sparse" else n.einsum


class _Builder:
    def __init__(
        self,
        graph: Graph,
        decomposition: Mapping[int, Partition],
        counts: Mapping[str, Any] | None = None,
    ) -> None:
        self.graph = graph
        self.dec = decomposition
        self.counts = counts or {}
        self.tasks: list[Task] = []
        self.blocks: dict[int, dict[Box, int]] = {}
        self.memo: dict[tuple[int, Box, Any], int] = {}
        self.relations = {n.name: n for n in graph.nodes if n.op == "relation"}

    def add(
        self,
        kind: TaskKind,
        node: int,
        inputs: Sequence[int],
        shape: Sequence[int],
        dtype: str,
        op: Any = None,
        offset: Sequence[int] = (),
        tuples: Tuples | None = None,
    ) -> int:
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
            tuples,
        )
        self.tasks.append(t)
        return t.id

    def tuples(self, u: int, box: Box, order: int | None) -> Tuples | None:
        """What a block `box` of node u holds when u is a relation: its planned capacity."""
        support = support_of(self.graph[u])
        if support is None:
            return None
        rel = self.relations[support.relation]
        k = support.nkeys
        keys = rel.shape[: len(rel.attrs.keys)]
        # the block's key box in the relation input's key order
        offs = [0] * len(keys)
        sizes = list(keys)
        for dim, src in enumerate(support.order):
            offs[src], sizes[src] = box[0][dim], box[1][dim]
        counts = self.counts.get(support.relation)
        count = counts(tuple(offs), tuple(sizes)) if counts is not None else None
        cap = capacity(support.nnz, keys, (tuple(offs), tuple(sizes)), count)
        return Tuples(cap, k, order, index_dtype(max(max(keys), support.nnz)).itemsize)

    def gather(self, u: int, box: Box, order: int | None = None) -> int:
        """A task whose value is exactly `box` of node u's output (for a relation, its tuples
        in that box listed in `order`)."""
        n = self.graph[u]
        if support_of(n) is None:
            order = None
        elif order == ANY:  # any order will do: the block as it is made, when it is one
            held = self.blocks.get(u, {}).get(box)
            order = _order(self.tasks[held]) if held is not None else None
        key = (u, box, order)
        if key in self.memo:
            return self.memo[key]
        offs, sizes = box
        if n.op in ("input", "relation"):
            tup = self.tuples(u, box, order)
            t = self.add("input", u, (), sizes, n.dtype, offset=offs, tuples=tup)
        elif n.op == "fill":
            t = self.add("fill", u, (), sizes, n.dtype, op=n.attrs, offset=offs)
        elif box in self.blocks[u] and _order(self.tasks[self.blocks[u][box]]) == order:
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
            tup = self.tuples(u, box, order)
            t = self.add("assemble", u, inputs, sizes, n.dtype, op=tuple(pieces), tuples=tup)
        self.memo[key] = t
        return t

    def node(self, v: int) -> None:
        n = self.graph[v]
        if n.op in ("input", "fill", "relation"):
            return
        part = output_partition(self.graph, self.dec, v)
        out: dict[Box, int] = {}
        if n.op in ("einsum", "sparse"):
            out = self._einsum(v)
        elif n.op == "densify":  # each block from the relation's tuples in that box
            for box in part.boxes():
                ins = [self.gather(n.inputs[0], box, ANY)]
                out[box] = self.add("densify", v, ins, box[1], n.dtype)
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
        """Join blocks of an einsum (over a relation too: a cut key cuts its tuples by key
        range, and every relation operand of a block lists them in one `block_order`)."""
        n = self.graph[v]
        op = join_of(n)
        sparse = n.attrs if n.op == "sparse" else None
        part = self.dec[v]
        labels = op.labels
        nout = len(op.output)
        order = None
        if sparse is not None:
            grid = dict(zip(labels, part.grid))
            order = block_order([grid[lab] > 1 for lab in sparse.keys])
        partials: dict[tuple[int, ...], list[int]] = {}
        for b in part.blocks():
            offs, sizes = part.box(b)
            at = dict(zip(labels, offs))
            size = dict(zip(labels, sizes))
            # An init operand is added once per output block: by its first aggregation block.
            block_op: Any = op.with_sizes(size)
            operands = list(zip(n.inputs, op.inputs))
            if op.init and any(b[nout:]):
                block_op, operands = block_op.body, operands[1:]
            ins = []
            for u, labs in operands:
                box = (tuple(at[lab] for lab in labs), tuple(size[lab] for lab in labs))
                ins.append(self.gather(u, box, self._order_of(u, labs, sparse, order)))
            kind: TaskKind = "apply"
            tup = None
            if sparse is not None:
                kind = "sparse"
                held = [s for i in ins if (s := self.tasks[i].support) is not None]
                cap = min(h.capacity for h in held) if held else sparse.nnz
                block_op = sparse.block(size, cap)
                if sparse.out is not None:
                    box = (
                        tuple(at[lab] for lab in op.output),
                        tuple(size[lab] for lab in op.output),
                    )
                    out_order = self._order_of(v, op.output, sparse, order)
                    tup = self.tuples(v, box, out_order)
            t = self.add(kind, v, ins, block_op.out_shape, n.dtype, op=block_op, tuples=tup)
            partials.setdefault(b[:nout], []).append(t)
        out: dict[Box, int] = {}
        opart = part.restrict(range(nout))
        for ob, ts in partials.items():
            box = opart.box(ob)
            if len(ts) == 1:
                out[box] = ts[0]
            else:
                tup = self.tasks[ts[0]].support
                out[box] = self.add("agg", v, ts, box[1], n.dtype, op=op.agg, tuples=tup)
        return out

    def _order_of(self, u: int, labs: str, sparse: Any, order: int | None) -> int | None:
        """The key dim of operand u (labels `labs`) that a join block's tuples are sorted by:
        the join's `order`-th support key, as u labels it."""
        if sparse is None or order is None or support_of(self.graph[u]) is None:
            return None
        return labs.index(sparse.keys[order])

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


def build_tasks(
    graph: Graph,
    decomposition: Mapping[int, Partition],
    counts: Mapping[str, Callable[[tuple[int, ...], tuple[int, ...]], int]] | None = None,
) -> TaskGraph:
    """Unplaced block tasks for `graph` under a partition per node. `counts[r](offsets,
    sizes)` gives the tuples of relation r in a key box when its structure is known (a
    uniform spread of its `nnz` is assumed otherwise)."""
    check_decomposition(graph, decomposition)
    b = _Builder(graph, decomposition, counts)
    for n in graph.nodes:
        b.node(n.id)
    outputs = []
    for i in graph.outputs:
        part = output_partition(graph, decomposition, i)
        outputs.append(tuple((b.gather(i, box, ANY), box[0]) for box in part.boxes()))
    return TaskGraph(graph, tuple(b.tasks), tuple(outputs))


def _order(t: Task) -> int | None:
    return t.support.order if t.support is not None else None


def check_decomposition(graph: Graph, decomposition: Mapping[int, Partition]) -> None:
    for n in graph.nodes:
        p = decomposition.get(n.id)
        if p is None:
            raise CompileError(f"decomposition has no partition for node {n.name}")
        joins = n.op in ("einsum", "sparse")
        want = join_of(n).join_shape if joins else n.shape
        if p.shape != tuple(want):
            what = f"join shape of {join_of(n)}" if joins else "shape"
            raise CompileError(
                f"node {n.name}: partition {p} over {p.shape} does not fit the {what} {tuple(want)}"
            )
