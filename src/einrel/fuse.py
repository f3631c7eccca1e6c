"""Elementwise fusion: fold an elementwise einsum into its only consumer.

`relu(x) @ w`, `w - lr * g`, the pieces of softmax and most gradient joins are chains of
elementwise einsums; computed one node at a time each writes and reads a whole tensor. Because a
join is a scalar expression, the producer's join can be substituted into the consumer's join
(its labels renamed to the consumer's), which removes the node, its blocks and its memory.

A producer is folded only when that cannot cost speed or change results: it is an elementwise
float32/float64 einsum with exactly one consumer that reads it once, it is not a graph output,
and a consumer that ran as a BLAS contraction still does after the fold.
"""

from __future__ import annotations

import math

from . import scalar as S
from .einsum import Einsum
from .graph import GNode, Graph


def _factorable(op: Einsum) -> bool:
    return op.agg in (None, "sum") and not math.isnan(S.product_factors(op.join)[0])


def _foldable(graph: Graph, p: GNode, c: GNode) -> bool:
    return (
        p.op == "einsum"
        and p.einsum.agg is None
        and p.dtype in ("float32", "float64")
        and not p.stop_grad
        and p.id not in graph.outputs
        and graph.consumers(p.id) == (c.id,)
        and c.inputs.count(p.id) == 1
        and all(graph[i].dtype == p.dtype for i in p.inputs)
    )


def _fold(
    op: Einsum, k: int, inner: Einsum, inner_inputs: tuple[int, ...], inputs: tuple[int, ...]
) -> tuple[Einsum, tuple[int, ...]]:
    """Substitute `inner` (elementwise, the producer of operand k) into `op`."""
    rename = dict(zip(inner.output, op.inputs[k]))
    labels = list(op.inputs[:k]) + ["".join(rename[c] for c in labs) for labs in inner.inputs]
    labels += op.inputs[k + 1 :]
    srcs = list(inputs[:k]) + list(inner_inputs) + list(inputs[k + 1 :])
    m = inner.arity
    shift = {i: i if i < k else i + m - 1 for i in range(op.arity) if i != k}
    join = S.substitute(
        S.remap_holes(op.join, shift) if shift else op.join,
        {k: S.remap_holes(inner.join, {j: k + j for j in range(m)})},
    )
    # Operands that are the same tensor under the same labels become one hole.
    seen: dict[tuple[int, str], int] = {}
    keep_labels, keep_srcs, remap = [], [], {}
    for i, key in enumerate(zip(srcs, labels)):
        if key not in seen:
            seen[key] = len(keep_srcs)
            keep_srcs.append(key[0])
            keep_labels.append(key[1])
        remap[i] = seen[key]
    join = S.simplify(S.remap_holes(join, remap))
    size = op.size
    agg = list(dict.fromkeys(c for labs in keep_labels for c in labs if c not in op.output))
    sizes = tuple((c, size[c]) for c in [*op.output, *agg])
    return Einsum(tuple(keep_labels), op.output, sizes, join, op.agg), tuple(keep_srcs)


def fuse_elementwise(graph: Graph) -> Graph:
    """The same computation with foldable elementwise producers folded into their consumer."""
    ops: dict[int, Einsum] = {}
    ins: dict[int, tuple[int, ...]] = {}
    absorbed: set[int] = set()
    for n in graph.nodes:
        if n.op != "einsum":
            continue
        op, srcs = n.einsum, n.inputs
        k = 0
        while k < len(srcs):
            p = graph[srcs[k]]
            if p.id in ops and _foldable(graph, p, n) and p.dtype == n.dtype:
                new_op, new_srcs = _fold(op, k, ops[p.id], ins[p.id], srcs)
                if not _factorable(op) or _factorable(new_op):
                    op, srcs = new_op, new_srcs
                    absorbed.add(p.id)
                    continue  # operand k is now the producer's first operand: look again
            k += 1
        ops[n.id], ins[n.id] = op, srcs
    if not absorbed:
        return graph
    new_id: dict[int, int] = {}
    nodes: list[GNode] = []
    for n in graph.nodes:
        if n.id in absorbed:
            continue
        i = len(nodes)
        new_id[n.id] = i
        attrs = ops.get(n.id, n.attrs)
        inputs = ins.get(n.id, n.inputs)
        name = n.name if n.op == "input" else f"%{i}"
        nodes.append(
            GNode(
                i,
                n.op,
                tuple(new_id[j] for j in inputs),
                n.shape,
                n.dtype,
                attrs,
                name,
                n.stop_grad,
            )
        )
    return Graph(tuple(nodes), tuple(new_id[i] for i in graph.outputs))
