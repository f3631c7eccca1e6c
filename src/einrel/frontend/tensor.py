"""Lazy tensors: the handles a user builds a model with, and the sugar on them.

A `Tensor` wraps an immutable graph `Node`; its operators build more nodes (all of
them extended einsums or a few structural nodes), so writing a model writes a DAG with
no global state. `build_graph(outputs)` turns what the outputs reach into a `Graph`.
Broadcasting follows numpy: shapes align on the right, and a dimension of size 1
stretches; a stretched size-1 dimension is first squeezed away with a reshape, so the
einsum that follows sees only labels with one size each (what decomposition needs).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from ..errors import EinrelError, ShapeError, SpecError
from ..ir import scalar as S
from ..ir.einsum import make_einsum
from ..ir.graph import (
    _SHORT,
    Graph,
    Node,
    Reshape,
    Slice,
    check_dtype,
    check_name,
    check_shape,
    graph_of,
)
from ..ir.relation import sparse_einsum, support_of
from .einsum_doc import EINSUM_DOC


class Tensor:
    """A lazy tensor: a handle on a graph node. Nothing runs until `er.evaluate` or a Program."""

    __slots__ = ("node",)
    _einrel_tensor = True
    __array_priority__ = 1000

    def __init__(self, node: Node, name: str | None = None) -> None:
        self.node = node if name is None else replace(node, name=check_name(name))

    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor's shape (a relation's: its key sizes, then its value dims)."""
        return self.node.shape

    @property
    def dtype(self) -> str:
        """The einrel dtype: float32, float64, float16 or bfloat16."""
        return self.node.dtype

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return len(self.node.shape)

    @property
    def name(self) -> str | None:
        """The name given by er.input, er.relation, `name=` or `.named()`; None otherwise."""
        return self.node.name

    def named(self, name: str) -> Tensor:
        """This tensor under a name shown in plans, `explain()` and trace events.

        A new tensor for the same value: name a tensor before using it, or the graph holds
        both the named and the unnamed node."""
        return Tensor(self.node, name=name)

    @property
    def size(self) -> int:
        """The number of elements (of the dense extent, for a relation)."""
        return math.prod(self.node.shape)

    def graph(self) -> Graph:
        """The graph of everything this tensor depends on, with this tensor as its output."""
        return build_graph([self])

    def __repr__(self) -> str:
        label = self.node.name or self.node.op
        return f"Tensor({label}: {_SHORT[self.dtype]}{list(self.shape)})"

    def __bool__(self) -> bool:
        raise EinrelError("a lazy Tensor has no truth value; evaluate it first")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise EinrelError(
            f"{self!r} is lazy; use er.evaluate([...], feeds) or er.compile(...).run(feeds)"
        )

    def __len__(self) -> int:
        if not self.shape:
            raise EinrelError("len() of a 0-d Tensor")
        return self.shape[0]

    # The sugar is defined below in this module; methods resolve it when called.
    def __add__(self, o: Any) -> Tensor:
        return add(self, o)

    def __radd__(self, o: Any) -> Tensor:
        return add(o, self)

    def __sub__(self, o: Any) -> Tensor:
        return subtract(self, o)

    def __rsub__(self, o: Any) -> Tensor:
        return subtract(o, self)

    def __mul__(self, o: Any) -> Tensor:
        return multiply(self, o)

    def __rmul__(self, o: Any) -> Tensor:
        return multiply(o, self)

    def __truediv__(self, o: Any) -> Tensor:
        return divide(self, o)

    def __rtruediv__(self, o: Any) -> Tensor:
        return divide(o, self)

    def __pow__(self, o: Any) -> Tensor:
        return power(self, o)

    def __rpow__(self, o: Any) -> Tensor:
        return power(o, self)

    def __neg__(self) -> Tensor:
        return negative(self)

    def __matmul__(self, o: Any) -> Tensor:
        return matmul(self, o)

    def __rmatmul__(self, o: Any) -> Tensor:
        return matmul(o, self)

    def __getitem__(self, index: Any) -> Tensor:
        return getitem(self, index)

    @property
    def T(self) -> Tensor:
        """The transpose (all axes reversed), as numpy's `.T`."""
        return transpose(self)

    def transpose(self, *axes: Any) -> Tensor:
        """The tensor with its axes permuted (reversed when `axes` is None), as numpy."""
        if len(axes) == 1 and not isinstance(axes[0], numbers.Integral):  # x.transpose((1, 0))
            axes = tuple(axes[0]) if axes[0] is not None else ()
        return transpose(self, axes or None)

    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """The sum over `axis` (all axes when None), as numpy; `keepdims` keeps them as size 1."""
        return reduce(self, "sum", axis, keepdims)

    def max(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """The maximum over `axis` (all axes when None); ties share the gradient equally."""
        return reduce(self, "max", axis, keepdims)

    def min(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """The minimum over `axis` (all axes when None); ties share the gradient equally."""
        return reduce(self, "min", axis, keepdims)

    def prod(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """The product over `axis` (all axes when None); exact gradients with zeros present."""
        return reduce(self, "prod", axis, keepdims)

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """The mean over `axis` (all axes when None), as numpy."""
        return mean(self, axis, keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        """The same elements in another shape (one -1 is inferred), as numpy in C order."""
        return reshape(self, shape[0] if len(shape) == 1 else shape)

    def astype(self, dtype: str) -> Tensor:
        """The tensor converted to einrel dtype `dtype` (the same tensor if it has it)."""
        return astype(self, dtype)


def build_graph(outputs: Iterable[Tensor]) -> Graph:
    """Number every node reachable from `outputs` (depth-first, operands in order) and check it."""
    outs = list(outputs)
    for t in outs:
        if not isinstance(t, Tensor):
            raise EinrelError(f"graph outputs must be einrel Tensors, got {type(t).__name__}")
    return graph_of([t.node for t in outs])


_L = "abcdefghijklmnopqrstuvwxyz"


Operand = Any  # a Tensor, a Python number, or a scalar Sym (e.g. a run-time variable)


def einsum(
    spec: str,
    *operands: Operand,
    join: Callable[..., Any] | S.Expr | None = None,
    agg: str | None = "sum",
    sizes: dict[str, int] | None = None,
    dtype: str | None = None,
    name: str | None = None,
) -> Tensor:
    tensors: list[Tensor] = []
    for k, x in enumerate(operands):
        if not isinstance(x, Tensor) and not _is_scalar(x):
            raise EinrelError(
                f"einsum {spec!r}: operand {k} is a {type(x).__name__}; operands must be einrel "
                "Tensors (er.input, ...), numbers or er.var(...)"
            )
    shapes = [x.shape if isinstance(x, Tensor) else () for x in operands]
    op = make_einsum(spec, shapes, join=join, agg=agg, sizes=sizes, node=_where("einsum", shapes))
    # Inline scalar operands into the join so they never become graph nodes.
    keep = [k for k, x in enumerate(operands) if isinstance(x, Tensor)]
    if len(keep) < len(operands):
        subst = {k: S.as_expr(x) for k, x in enumerate(operands) if not isinstance(x, Tensor)}
        expr = S.substitute(op.join, subst)
        expr = S.remap_holes(expr, {k: j for j, k in enumerate(keep)})
        op = type(op)(
            tuple(op.inputs[k] for k in keep), op.output, op.sizes, S.simplify(expr), op.agg
        )
        tensors = [operands[k] for k in keep]
    else:
        tensors = list(operands)
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        raise ShapeError(
            f"einsum {spec!r} with operand shapes {shapes}: operands have different dtypes "
            f"{[t.dtype for t in tensors]}; convert with .astype(...) first"
        )
    out_dtype = check_dtype(dtype or (tensors[0].dtype if tensors else "float32"), "einsum")
    supports = [support_of(t.node) for t in tensors]
    if any(s is not None for s in supports):  # a join over a relation's tuples
        where = _where("einsum", shapes) + f" {op.spec!r}"
        sparse = sparse_einsum(op, supports, where)
        node = Node("sparse", tuple(t.node for t in tensors), op.out_shape, out_dtype, sparse)
    else:
        node = Node("einsum", tuple(t.node for t in tensors), op.out_shape, out_dtype, op)
    return Tensor(node, name=name) if name is not None else Tensor(node)


einsum.__doc__ = EINSUM_DOC


def stop_gradient(x: Tensor) -> Tensor:
    """The identity, seen by er.grad as a constant."""
    x = _tensor(x, "stop_gradient")
    if x.node.op not in ("einsum", "sparse"):
        labs = _L[: x.ndim]
        x = einsum(f"{labs}->{labs}", x, agg=None)
    n = x.node  # the same einsum, flagged (no extra node)
    return Tensor(Node(n.op, n.inputs, n.shape, n.dtype, n.attrs, n.name, stop_grad=True))


def _is_scalar(x: Any) -> bool:
    if isinstance(x, S.Sym):
        return not x.expr.holes()
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _where(what: str, shapes: Sequence[Sequence[int]]) -> str:
    return f"{what} (operand shapes {[tuple(s) for s in shapes]})"


def _tensor(x: Any, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise EinrelError(f"{what} expects an einrel Tensor, got {type(x).__name__}")
    return x


def broadcast_shapes(*shapes: Sequence[int], what: str = "broadcast") -> tuple[int, ...]:
    """The shape numpy's broadcasting gives `shapes`; a ShapeError if none."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[int] = []
    for d in range(rank):
        sizes = {s[len(s) - rank + d] for s in shapes if len(s) - rank + d >= 0}
        big = sizes - {1}
        if len(big) > 1:
            raise ShapeError(f"{what}: shapes {[tuple(s) for s in shapes]} do not broadcast")
        out.append(big.pop() if big else 1)
    return tuple(out)


def elementwise(fn: Callable[..., Any], *args: Operand, what: str = "elementwise") -> Tensor:
    """Apply a scalar function elementwise with numpy broadcasting, as one einsum node."""
    tensors = [a for a in args if isinstance(a, Tensor)]
    if not tensors:
        raise EinrelError(f"{what}: needs at least one Tensor operand")
    for a in args:
        if not isinstance(a, Tensor) and not _is_scalar(a):
            raise EinrelError(f"{what}: cannot combine a Tensor with {type(a).__name__} {a!r}")
    out = broadcast_shapes(*(t.shape for t in tensors), what=what)
    labels = _L[: len(out)]
    specs: list[str] = []
    operands: list[Operand] = []
    for a in args:
        if not isinstance(a, Tensor):
            specs.append("")
            operands.append(a)
            continue
        off = len(out) - a.ndim
        keep = [d for d in range(a.ndim) if not (a.shape[d] == 1 and out[off + d] != 1)]
        if len(keep) < a.ndim:
            a = reshape(a, tuple(a.shape[d] for d in keep))
        specs.append("".join(labels[off + d] for d in keep))
        operands.append(a)
    spec = ",".join(specs) + "->" + labels
    return einsum(spec, *operands, join=fn, agg=None)


def add(a: Operand, b: Operand) -> Tensor:
    return elementwise(lambda x, y: x + y, a, b, what="add")


def subtract(a: Operand, b: Operand) -> Tensor:
    return elementwise(lambda x, y: x - y, a, b, what="subtract")


def multiply(a: Operand, b: Operand) -> Tensor:
    return elementwise(lambda x, y: x * y, a, b, what="multiply")


def divide(a: Operand, b: Operand) -> Tensor:
    return elementwise(lambda x, y: x / y, a, b, what="divide")


def power(a: Operand, b: Operand) -> Tensor:
    return elementwise(lambda x, y: x**y, a, b, what="power")


def negative(a: Tensor) -> Tensor:
    return elementwise(lambda x: -x, a, what="negative")


def astype(x: Tensor, dtype: str) -> Tensor:
    """The tensor `x` converted to einrel dtype `dtype` (`x` itself if it has it)."""
    x = _tensor(x, "astype")
    dtype = check_dtype(dtype, "astype")
    if dtype == x.dtype:
        return x
    labs = _L[: x.ndim]
    return einsum(f"{labs}->{labs}", x, agg=None, dtype=dtype)


def _axes(x: Tensor, axis: int | Sequence[int] | None, what: str) -> list[int]:
    if axis is None:
        return list(range(x.ndim))
    axes = [axis] if isinstance(axis, int | numbers.Integral) else list(axis)
    out: list[int] = []
    for a in axes:
        if not isinstance(a, numbers.Integral) or not -x.ndim <= a < x.ndim:
            raise ShapeError(f"{what}: axis {a!r} out of range for shape {x.shape}")
        out.append(int(a) % x.ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"{what}: repeated axis in {axis!r}")
    return out


def transpose(x: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    """`x` with its axes permuted (reversed when `axes` is None), as `np.transpose`."""
    x = _tensor(x, "transpose")
    perm = list(range(x.ndim))[::-1] if axes is None else _axes(x, axes, "transpose")
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"transpose: axes {axes!r} are not a permutation of shape {x.shape}")
    labs = _L[: x.ndim]
    return einsum(f"{labs}->{''.join(labs[p] for p in perm)}", x, agg=None)


def reshape(x: Tensor, shape: Sequence[int] | int) -> Tensor:
    """The elements of `x` in another shape (one -1 is inferred), as `np.reshape` in C order."""
    x = _dense(x, "reshape")
    dims = [shape] if isinstance(shape, int) else [int(n) for n in shape]
    if dims.count(-1) > 1:
        raise ShapeError(f"reshape of {x.shape}: at most one -1 in {tuple(dims)}")
    if -1 in dims:
        known = math.prod(n for n in dims if n != -1)
        if known == 0 or x.size % known:
            raise ShapeError(f"reshape: cannot reshape {x.shape} into {tuple(dims)}")
        dims[dims.index(-1)] = x.size // known
    new = check_shape(dims, f"reshape of {x.shape}")
    if math.prod(new) != x.size:
        raise ShapeError(f"reshape: cannot reshape {x.shape} ({x.size} elements) into {new}")
    if new == x.shape:
        return x
    return Tensor(Node("reshape", (x.node,), new, x.dtype, Reshape(new)))


def slice_(x: Tensor, starts: Sequence[int], stops: Sequence[int]) -> Tensor:
    """The block `starts:stops` of `x` (unit steps); `x[a:b, c]` does the same."""
    x = _dense(x, "slice")
    starts, stops = tuple(int(s) for s in starts), tuple(int(s) for s in stops)
    if len(starts) != x.ndim or len(stops) != x.ndim:
        raise ShapeError(f"slice of {x.shape}: needs {x.ndim} starts and stops")
    for a, b, n in zip(starts, stops, x.shape):
        if not 0 <= a < b <= n:
            raise ShapeError(f"slice {starts}:{stops} of shape {x.shape} is empty or out of range")
    if starts == (0,) * x.ndim and stops == x.shape:
        return x
    shape = tuple(b - a for a, b in zip(starts, stops))
    return Tensor(Node("slice", (x.node,), shape, x.dtype, Slice(starts, stops)))


def getitem(x: Tensor, index: Any) -> Tensor:
    """Basic indexing with ints and unit-step slices."""
    idx = index if isinstance(index, tuple) else (index,)
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (slice(None),) * (x.ndim - len(idx) + 1) + idx[k + 1 :]
    if len(idx) > x.ndim:
        raise ShapeError(f"index {index!r} has too many entries for shape {x.shape}")
    idx = idx + (slice(None),) * (x.ndim - len(idx))
    starts, stops, drop = [], [], []
    for d, (i, n) in enumerate(zip(idx, x.shape)):
        if isinstance(i, numbers.Integral):
            j = int(i) + n if i < 0 else int(i)
            if not 0 <= j < n:
                raise ShapeError(f"index {i} out of range for dim {d} of shape {x.shape}")
            starts.append(j)
            stops.append(j + 1)
            drop.append(d)
        elif isinstance(i, slice):
            a, b, step = i.indices(n)
            if step != 1:
                raise ShapeError(f"index {index!r}: only unit-step slices are supported")
            starts.append(a)
            stops.append(b)
        else:
            raise ShapeError(f"index {index!r}: only ints and slices are supported")
    y = slice_(x, starts, stops)
    if drop:
        shape = tuple(n for d, n in enumerate(y.shape) if d not in drop)
        y = reshape(y, shape or (1,)) if shape else _scalar_of(y)
    return y


def _dense(x: Any, what: str) -> Tensor:
    """`x` as a Tensor that is not a relation: structural ops move dense blocks only."""
    t = _tensor(x, what)
    if support_of(t.node) is not None:
        raise SpecError(
            f"{what} of {t!r}: a relation has no {what}; aggregate it into a dense tensor with "
            "er.einsum, or scatter it with er.densify first"
        )
    return t


def _scalar_of(x: Tensor) -> Tensor:
    labs = _L[: x.ndim]
    return einsum(f"{labs}->", x)


def reduce(
    x: Tensor,
    agg: str,
    axis: int | Sequence[int] | None = None,
    keepdims: bool = False,
    join: Callable[..., Any] | None = None,
) -> Tensor:
    x = _tensor(x, agg)
    axes = _axes(x, axis, agg)
    labs = _L[: x.ndim]
    out = "".join(lab for d, lab in enumerate(labs) if d not in axes)
    y = einsum(f"{labs}->{out}", x, agg=agg, join=join)
    if keepdims:
        y = reshape(y, tuple(1 if d in axes else n for d, n in enumerate(x.shape)))
    return y


def sum_(x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    """The sum of `x` over `axis` (all axes when None), as `np.sum`."""
    return reduce(x, "sum", axis, keepdims)


def mean(x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    """The mean of `x` over `axis` (all axes when None), as `np.mean`."""
    x = _tensor(x, "mean")
    n = math.prod(x.shape[a] for a in _axes(x, axis, "mean"))
    return reduce(x, "sum", axis, keepdims, join=lambda v: v * (1.0 / n))


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """numpy's matmul: 1-D operands are promoted, batch dims broadcast."""
    a, b = _tensor(a, "matmul"), _tensor(b, "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: 0-d operand (shapes {a.shape}, {b.shape}); use *")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} do not align")
    if a.ndim == 1 and b.ndim == 1:
        return einsum("k,k->", a, b)
    if a.ndim == 1:
        return einsum(f"k,{_L[: b.ndim - 2]}kn->{_L[: b.ndim - 2]}n", a, b)
    if b.ndim == 1:
        return einsum(f"{_L[: a.ndim - 2]}mk,k->{_L[: a.ndim - 2]}m", a, b)
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2], what="matmul")
    labels = _L[: len(batch)]
    specs, ops = [], []
    for t, tail in ((a, "mk"), (b, "kn")):
        nb = t.ndim - 2
        off = len(batch) - nb
        keep = [d for d in range(nb) if not (t.shape[d] == 1 and batch[off + d] != 1)]
        if len(keep) < nb:
            t = reshape(t, tuple(t.shape[d] for d in keep) + t.shape[-2:])
        specs.append("".join(labels[off + d] for d in keep) + tail)
        ops.append(t)
    return einsum(f"{specs[0]},{specs[1]}->{labels}mn", *ops)
