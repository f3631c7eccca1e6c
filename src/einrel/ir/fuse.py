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

Updates go the other way (`fold_updates`): an elementwise `w + s * g` (s free of inputs, a
learning rate, say) whose g is a sum-aggregated einsum read by nothing else becomes that einsum
with `w` as its init operand, `w + s * SUM(join)`, so an SGD step after a weight-gradient GEMM
is one GEMM that accumulates into the new weight (no pass over the gradient, none over w).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from . import scalar as S
from .einsum import Einsum
from .graph import GNode, Graph, node_name
from .relation import support_of


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
    """The same computation with foldable elementwise producers folded into their consumer
    (an einsum over a relation too: a dense producer's join joins its tuples)."""
    ops: dict[int, Einsum] = {}
    ins: dict[int, tuple[int, ...]] = {}
    changed: dict[int, tuple[object, tuple[int, ...]]] = {}
    absorbed: set[int] = set()
    for n in graph.nodes:
        if n.op not in ("einsum", "sparse"):
            continue
        sparse = n.attrs if n.op == "sparse" else None
        op, srcs = (sparse.einsum if sparse is not None else n.einsum), n.inputs
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
            if op.factored and not new_op.factored:
                refused.add(p.id)
                continue
            op, srcs = new_op, new_srcs
            absorbed.add(p.id)
        if sparse is None:
            ops[n.id], ins[n.id] = op, srcs
            changed[n.id] = (op, srcs)
        else:
            rel = tuple(support_of(graph[s]) is not None for s in srcs)
            changed[n.id] = (replace(sparse, einsum=op, relational=rel), srcs)
    if not absorbed:
        return fold_updates(graph)
    return fold_updates(_rebuild(graph, absorbed, changed))


def _rebuild(
    graph: Graph, gone: set[int], changed: Mapping[int, tuple[object, tuple[int, ...]]]
) -> Graph:
    """`graph` without the nodes `gone`, with the einsum and operands of the nodes `changed`
    replaced, renumbered in order."""
    new_id: dict[int, int] = {}
    nodes: list[GNode] = []
    taken = {n.name for n in graph.nodes if n.op in ("input", "relation")}
    for n in graph.nodes:
        if n.id in gone:
            continue
        i = len(nodes)
        new_id[n.id] = i
        attrs, inputs = changed.get(n.id, (n.attrs, n.inputs))
        name = n.name if n.op in ("input", "relation") else node_name(n.name, i, taken)
        taken.add(name)
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


def _update_of(op: Einsum) -> tuple[int, S.Expr] | None:
    """(a, s) when `op` is the elementwise `x_a + s * x_b` (b = 1 - a) over two operands that
    both carry exactly the output labels, with s free of inputs; else None."""
    if op.agg is not None or op.arity != 2 or op.inputs != (op.output, op.output):
        return None
    j = op.join
    if j.op != "add":
        return None
    for side, other in ((j.args[0], j.args[1]), (j.args[1], j.args[0])):
        if side.op != "hole":
            continue
        b = 1 - side.value
        split = S.scaled_product(other)
        if split is None or split[2] != {b: S.hole(b)}:
            continue
        coef, scale, _ = split
        s = S.const(coef) if scale is None else S.simplify(S.mul(S.const(coef), scale))
        return side.value, s
    return None


def fold_updates(graph: Graph) -> Graph:
    """The same computation with every foldable update `w + s * g` made the init einsum of g
    (see the module docstring): g a float32/float64 sum-aggregated einsum without init, read
    only by the update and not a graph output, and w another tensor of the update's dtype."""
    folds: dict[int, tuple[int, Einsum, tuple[int, ...]]] = {}  # update id -> (g, new op, ins)
    for c in graph.nodes:
        if c.op != "einsum" or c.dtype not in ("float32", "float64"):
            continue
        found = _update_of(c.einsum)
        if found is None:
            continue
        a, s = found
        w_id, g_id = c.inputs[a], c.inputs[1 - a]
        g = graph[g_id]
        if (
            g.op != "einsum"
            or w_id == g_id
            or g.einsum.agg != "sum"
            or g.einsum.init
            or g.dtype != c.dtype
            or graph[w_id].dtype != c.dtype
            or g.stop_grad
            or g_id in graph.outputs
            or graph.consumers(g_id) != (c.id,)
        ):
            continue
        op = g.einsum
        join = S.simplify(S.mul(s, S.remap_holes(op.join, {i: i + 1 for i in range(op.arity)})))
        new = Einsum((op.output, *op.inputs), op.output, op.sizes, join, "sum", init=True)
        folds[c.id] = (g_id, new, (w_id, *g.inputs))
    if not folds:
        return graph
    gone = {g for g, _, _ in folds.values()}
    return _rebuild(graph, gone, {u: (op, ins) for u, (_, op, ins) in folds.items()})
