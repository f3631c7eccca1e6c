"""Elementwise fusion: fold an elementwise einsum into its only consumer.

`relu(x) @ w`, `w - lr * g`, the pieces of softmax and most gradient joins are chains of
elementwise einsums; computed one node at a time each writes and reads a whole tensor. Because a
join is a scalar expression, the producer's join can be substituted into the consumer's join
(its labels renamed to the consumer's), which removes the node, its blocks and its memory.

The fold is exact for any producer and consumer: the consumer's join space (its labels and their
sizes) is kept as it is, so a producer with no operands (a constant or a broadcast fill) or one
the consumer reads several times, under the same or other labels, folds like any other.

A producer is folded only when that cannot cost speed or change results: it is an elementwise
float32/float64 einsum whose only consumer has its dtype, its operands have its dtype, it is not
a graph output, and a consumer that ran as a BLAS contraction still does after the fold.
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
        and p.dtype == c.dtype
        and not p.stop_grad
        and p.id not in graph.outputs
        and graph.consumers(p.id) == (c.id,)
        and all(graph[i].dtype == p.dtype for i in p.inputs)
    )


def fold(
    op: Einsum,
    srcs: tuple[int, ...],
    producer: int,
    inner: Einsum,
    inner_srcs: tuple[int, ...],
) -> tuple[Einsum, tuple[int, ...]]:
    """`op` (reading `srcs`) with every operand that is `producer` replaced by `inner`'s join.

    Each such operand k becomes `inner`'s operands under `inner`'s labels renamed to operand k's
    labels; all holes are renumbered in one simultaneous substitution, and operands that end up
    the same tensor under the same labels share one hole. The join space does not change.
    """
    labels: list[str] = []
    sources: list[int] = []
    subst: dict[int, S.Expr] = {}
    for k, (labs, src) in enumerate(zip(op.inputs, srcs)):
        if src != producer:
            subst[k] = S.hole(len(sources))
            labels.append(labs)
            sources.append(src)
            continue
        rename = dict(zip(inner.output, labs))
        start = len(sources)
        for ilabs, isrc in zip(inner.inputs, inner_srcs):
            labels.append("".join(rename[c] for c in ilabs))
            sources.append(isrc)
        subst[k] = S.remap_holes(inner.join, {j: start + j for j in range(inner.arity)})
    join = S.substitute(op.join, subst)
    seen: dict[tuple[int, str], int] = {}
    remap: dict[int, int] = {}
    for i, key in enumerate(zip(sources, labels)):
        remap[i] = seen.setdefault(key, len(seen))
    keys = list(seen)
    join = S.simplify(S.remap_holes(join, remap))
    new = Einsum(tuple(lab for _, lab in keys), op.output, op.sizes, join, op.agg)
    return new, tuple(src for src, _ in keys)


def fuse_elementwise(graph: Graph) -> Graph:
    """The same computation with foldable elementwise producers folded into their consumer."""
    ops: dict[int, Einsum] = {}
    ins: dict[int, tuple[int, ...]] = {}
    absorbed: set[int] = set()
    for n in graph.nodes:
        if n.op != "einsum":
            continue
        op, srcs = n.einsum, n.inputs
        refused: set[int] = set()
        while True:
            p = next(
                (
                    graph[s]
                    for s in dict.fromkeys(srcs)
                    if s in ops and s not in refused and _foldable(graph, graph[s], n)
                ),
                None,
            )
            if p is None:
                break
            new_op, new_srcs = fold(op, srcs, p.id, ops[p.id], ins[p.id])
            if _factorable(op) and not _factorable(new_op):
                refused.add(p.id)
                continue
            op, srcs = new_op, new_srcs
            absorbed.add(p.id)
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
        nodes.append(
            GNode(
                i,
                n.op,
                tuple(new_id[j] for j in ins.get(n.id, n.inputs)),
                n.shape,
                n.dtype,
                ops.get(n.id, n.attrs),
                n.name if n.op == "input" else f"%{i}",
                n.stop_grad,
            )
        )
    return Graph(tuple(nodes), tuple(new_id[i] for i in graph.outputs))
