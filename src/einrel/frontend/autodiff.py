"""Reverse-mode autodiff on the graph itself: gradients are ordinary graph nodes.

Einsum rules (input i with labels L_i, output cotangent g):
* sum (or no) aggregation: dX_i = einsum(g, x..., -> L_i) with join g * d(join)/d(x_i), which is
  the two standard contractions for a product join and the symbolic VJP for any other join;
* max / min: the gradient goes to the elements that attain the extremum; ties split it equally
  (each of c tied elements receives g / c), unlike torch's choice of one arbitrary element;
  when the node rounds its result (float16/bfloat16), the extremum is recomputed in float32 so
  that comparing it with the join still finds the elements that attain it;
* prod: d/dx_j of a product is the product of the other factors, computed exactly with zeros
  (by counting zeros and multiplying the non-zero factors), never by dividing by zero.
Labels of the join space that no operand of a VJP einsum carries (nor the target) multiply the
contribution by their sizes: the summand is the same for each of their values.
Structural nodes: slice pastes g into zeros, concat slices g, reshape reshapes back, fill and
stop_gradient nodes pass nothing. Contributions over fan-out are summed in one n-ary add.

The gradient with respect to a tensor the output does not depend on is zeros of its shape
(as in jax.grad), not an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import GradError
from ..ir import scalar as S
from ..ir.graph import Node, toposort
from ..ir.relation import support_of
from . import tensor as F
from .leaves import fill, zeros
from .relation import densify
from .structure import concat
from .tensor import Tensor

Cotangent = Tensor | float  # a float is the constant-filled seed d(loss)/d(loss) = 1


def grad(y: Tensor, wrt: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """Gradients of the scalar `y` with respect to each tensor in `wrt`, as graph nodes."""
    if not isinstance(y, Tensor):
        raise GradError(f"grad: the output must be an einrel Tensor, got {type(y).__name__}")
    if y.shape != ():
        raise GradError(
            f"grad: the output must be a scalar (shape ()), got {y!r} with shape {y.shape}; "
            "reduce it first, e.g. y.sum()"
        )
    targets = [wrt] if isinstance(wrt, Tensor) else list(wrt)
    for t in targets:
        if not isinstance(t, Tensor):
            raise GradError(f"grad: wrt must hold einrel Tensors, got {type(t).__name__}")
    order = toposort([y.node])
    wanted = {id(t.node) for t in targets}
    # Only nodes on a path from some target to y need a cotangent.
    live: set[int] = set()
    for n in order:
        if id(n) in wanted or any(id(x) in live for x in n.inputs):
            live.add(id(n))
    pending: dict[int, list[Cotangent]] = {id(y.node): [1.0]}
    done: dict[int, Cotangent] = {}
    for n in reversed(order):
        parts = pending.pop(id(n), None)
        if not parts or id(n) not in live:
            continue
        g = _sum(parts, n)
        done[id(n)] = g
        if n.stop_grad or n.op in ("input", "fill", "relation"):
            continue
        for k, contribution in _vjp(n, g):
            if id(n.inputs[k]) in live:
                pending.setdefault(id(n.inputs[k]), []).append(contribution)
    out = []
    for t in targets:
        ct = done.get(id(t.node))
        out.append(_zeros_like(t) if ct is None else _as_tensor(ct, t.node))
    return out


def _zeros_like(t: Tensor) -> Tensor:
    """Zeros shaped as `t`: for a relation, zeros on its support (never a dense N×N)."""
    if support_of(t.node) is None:
        return zeros(t.shape, t.dtype)
    return _as_tensor(0.0, t.node)


def _as_tensor(g: Cotangent, like: Node) -> Tensor:
    """A cotangent as a tensor; a constant one of a relation is that constant on its support."""
    if isinstance(g, Tensor):
        return g
    if support_of(like) is None:
        return fill(like.shape, g, like.dtype)
    labs = "abcdefghijklmnopqrstuvwxyz"[: len(like.shape)]
    return F.einsum(f"{labs}->{labs}", Tensor(like), join=S.const(g), agg=None)


def _sum(parts: list[Cotangent], n: Node) -> Cotangent:
    if len(parts) == 1:
        return parts[0]
    if all(not isinstance(p, Tensor) for p in parts):
        return float(sum(p for p in parts if not isinstance(p, Tensor)))
    labels = "abcdefghijklmnopqrstuvwxyz"[: len(n.shape)]
    tensors = [_as_tensor(p, n) for p in parts]
    join = S.hole(0)
    for i in range(1, len(tensors)):
        join = S.add(join, S.hole(i))
    return F.einsum(
        ",".join([labels] * len(tensors)) + "->" + labels, *tensors, join=join, agg=None
    )


def _vjp(n: Node, g: Cotangent) -> list[tuple[int, Cotangent]]:
    if n.op in ("einsum", "sparse"):
        return _einsum_vjp(n, g)
    gt = _as_tensor(g, n)
    if n.op == "densify":  # the cotangent at the relation's tuples
        labs = "abcdefghijklmnopqrstuvwxyz"[: len(n.shape)]
        rel = Tensor(n.inputs[0])
        return [(0, F.einsum(f"{labs},{labs}->{labs}", rel, gt, join=S.hole(1), agg=None))]
    if n.op == "reshape":
        return [(0, F.reshape(gt, n.inputs[0].shape))]
    if n.op == "slice":
        return [(0, _pad(gt, n.attrs.starts, n.inputs[0].shape))]
    if n.op == "concat":
        ax, off = n.attrs.axis, 0
        out: list[tuple[int, Cotangent]] = []
        for k, x in enumerate(n.inputs):
            starts = [0] * len(n.shape)
            stops = list(n.shape)
            starts[ax], stops[ax] = off, off + x.shape[ax]
            off += x.shape[ax]
            out.append((k, F.slice_(gt, starts, stops)))
        return out
    raise GradError(f"grad: no rule for node kind {n.op!r}")


def _pad(g: Tensor, starts: Sequence[int], full: Sequence[int]) -> Tensor:
    """Place g at `starts` inside zeros of shape `full` (concats of zero fills, dim by dim)."""
    for d, (a, n) in enumerate(zip(starts, full)):
        b = a + g.shape[d]
        pieces = []
        if a > 0:
            pieces.append(zeros(g.shape[:d] + (a,) + g.shape[d + 1 :], g.dtype))
        pieces.append(g)
        if b < n:
            pieces.append(zeros(g.shape[:d] + (n - b,) + g.shape[d + 1 :], g.dtype))
        g = concat(pieces, axis=d)
    return g


def _cast(t: Tensor, dtype: str) -> Tensor:
    return t if t.dtype == dtype else F.astype(t, dtype)


def _einsum_vjp(n: Node, g: Cotangent) -> list[tuple[int, Cotangent]]:
    op = n.attrs.einsum if n.op == "sparse" else n.attrs
    # Over a relation, every VJP einsum joins that relation's tuples too: an operand on its
    # support keeps the join sparse even when the derivative does not read its values.
    support = next((j for j, x in enumerate(n.inputs) if support_of(x) is not None), None)
    y = Tensor(n)
    xs = [Tensor(x) for x in n.inputs]
    k = op.arity
    size = op.size
    out: list[tuple[int, Cotangent]] = []
    # The dtype the VJP einsums work in: the inputs' own dtype, except that max/min find their
    # arg-extrema by comparing the join with y, which must then be recomputed unrounded when the
    # node rounds its result (float16/bfloat16, or an output dtype other than the inputs').
    work = n.inputs[0].dtype if n.inputs else n.dtype
    if op.agg in ("max", "min") and (n.dtype != work or work in ("float16", "bfloat16")):
        if work in ("float16", "bfloat16"):
            work = "float32"
            xs = [_cast(x, work) for x in xs]
        y = Tensor(Node(n.op, tuple(x.node for x in xs), n.shape, work, n.attrs))
    # Extra operands that precede the inputs in every VJP einsum, and the join factor that
    # turns d(join)/d(x_i) into the contribution.
    if op.agg in (None, "sum") and not isinstance(g, Tensor) and support_of(n) is not None:
        pre: list[tuple[str, Cotangent]] = []  # a constant on a relation: a constant factor
        factor = S.const(g)
    elif op.agg in (None, "sum"):
        pre = [(op.output, g)]
        factor = S.hole(0)
    elif op.agg in ("max", "min"):
        jx = S.remap_holes(op.join, {j: j + 1 for j in range(k)})
        hit = S.select("eq", jx, S.hole(0), S.ONE, S.ZERO)  # hole 0 = y
        count = F.einsum(_spec([op.output, *op.inputs], op.output), y, *xs, join=hit, agg="sum")
        pre = [(op.output, g), (op.output, y), (op.output, count)]
        jx = S.remap_holes(op.join, {j: j + 3 for j in range(k)})
        factor = S.div(S.mul(S.hole(0), S.select("eq", jx, S.hole(1), S.ONE, S.ZERO)), S.hole(2))
    elif op.agg == "prod":
        jx = op.join
        is_zero = S.select("eq", jx, S.ZERO, S.ONE, S.ZERO)
        spec = _spec(list(op.inputs), op.output)
        bcast = {lab: size[lab] for lab in op.broadcast_labels} or None
        nz = F.einsum(spec, *xs, join=is_zero, agg="sum", sizes=bcast)
        pnz = F.einsum(
            spec, *xs, join=S.select("eq", jx, S.ZERO, S.ONE, jx), agg="prod", sizes=bcast
        )
        pre = [(op.output, g), (op.output, nz), (op.output, pnz)]
        j3 = S.remap_holes(op.join, {j: j + 3 for j in range(k)})
        nzh, ph = S.hole(1), S.hole(2)
        others = S.select(
            "eq",
            j3,
            S.ZERO,
            S.select("eq", nzh, S.ONE, ph, S.ZERO),
            S.select("eq", nzh, S.ZERO, S.div(ph, j3), S.ZERO),
        )
        factor = S.mul(S.hole(0), others)
    else:  # pragma: no cover - make_einsum admits only the four aggregations
        raise GradError(f"grad: no rule for aggregation {op.agg!r}")
    npre = len(pre)
    for i in range(k):
        d = S.derivative(op.join, i)
        if d == S.ZERO:
            continue
        join = S.simplify(S.mul(factor, S.remap_holes(d, {j: j + npre for j in range(k)})))
        holes = sorted(join.holes())
        specs, operands = [], []
        for h in holes:
            labs, val = pre[h] if h < npre else (op.inputs[h - npre], xs[h - npre])
            specs.append(labs)
            operands.append(_cast(val, work) if isinstance(val, Tensor) else val)
        join = S.remap_holes(join, {h: j for j, h in enumerate(holes)})
        if (
            support_of(n.inputs[i]) is not None
            and not any(isinstance(o, Tensor) for o in operands)
            and not join.variables()
        ):
            # a constant cotangent of a relation stays a constant: nothing on its tuples is made
            value = S.compile_numpy(join, len(operands))(*operands, {})
            out.append((i, float(value)))
            continue
        if support is not None and not any(
            isinstance(o, Tensor) and support_of(o.node) is not None for o in operands
        ):
            specs.append(op.inputs[support])
            operands.append(xs[support])
        target = op.inputs[i]
        present = set("".join(specs))
        sizes = {lab: size[lab] for lab in target if lab not in present}
        # Labels of the join space that neither the target nor any operand here carries: the
        # summand does not depend on them, so summing over them multiplies by their sizes.
        mult = math.prod(size[lab] for lab in op.labels if lab not in present and lab not in target)
        if mult != 1:
            join = S.simplify(S.mul(S.const(mult), join))
        elif (
            specs == [target]
            and join == S.hole(0)
            and isinstance(operands[0], Tensor)
            and (support_of(operands[0].node) is None) == (support_of(n.inputs[i]) is None)
        ):
            out.append((i, _cast(operands[0], n.inputs[i].dtype)))  # the cotangent as it is
            continue
        contribution = F.einsum(
            ",".join(specs) + "->" + target,
            *operands,
            join=join,
            agg="sum",
            sizes=sizes or None,
            dtype=work,
        )
        if support_of(contribution.node) is not None and support_of(n.inputs[i]) is None:
            contribution = densify(contribution)  # a dense operand that was read at the tuples
        out.append((i, _cast(contribution, n.inputs[i].dtype)))
    return out


def _spec(inputs: list[str], output: str) -> str:
    return ",".join(inputs) + "->" + output
