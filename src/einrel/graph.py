"""Lazy tensors and the whole-tensor dataflow graph they describe.

A `Tensor` wraps an immutable `Node`; nodes point at their inputs, so building a model builds a
DAG with no global state. `build_graph(outputs)` numbers the nodes reachable from the outputs in a
deterministic topological order and returns a `Graph`: plain data that prints like a jaxpr and is
what every later stage consumes.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .einsum import Einsum
from .errors import EinrelError, ShapeError

DTYPES = ("float32", "float64", "float16", "bfloat16")
DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
_SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16"}
OPS = ("input", "fill", "einsum", "slice", "concat", "reshape")


def check_dtype(dtype: Any, where: str) -> str:
    name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None)
    if name is None and isinstance(dtype, type):
        try:  # numpy scalar types such as np.float32
            import numpy as np

            name = np.dtype(dtype).name
        except TypeError:
            name = None
    if name is None and dtype is not None:
        name = str(dtype)  # torch dtypes print as "torch.float32"
    name = str(name).replace("torch.", "")
    if name not in DTYPES:
        raise ShapeError(f"{where}: unsupported dtype {dtype!r}; expected one of {DTYPES}")
    return name


def check_shape(shape: Any, where: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"{where}: shape must be a sequence of ints, got {shape!r}") from None
    if any(n < 1 for n in dims) or any(int(n) != n for n in shape):
        raise ShapeError(f"{where}: every dimension must be a positive int, got {shape!r}")
    return dims


# --- node attributes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Fill:
    """A constant tensor: `value` everywhere, or (`triu`) only strictly above the diagonal of the
    last two dims and 0 elsewhere — the additive causal mask."""

    value: float
    triu: bool = False

    def __str__(self) -> str:
        return f"fill[{self.value}{', triu' if self.triu else ''}]"


@dataclass(frozen=True)
class Slice:
    starts: tuple[int, ...]
    stops: tuple[int, ...]

    def __str__(self) -> str:
        return "slice[" + ", ".join(f"{a}:{b}" for a, b in zip(self.starts, self.stops)) + "]"


@dataclass(frozen=True)
class Concat:
    axis: int

    def __str__(self) -> str:
        return f"concat[axis={self.axis}]"


@dataclass(frozen=True)
class Reshape:
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"reshape[{self.shape}]"


# --- lazy tensors -----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Node:
    """One operation in the lazy DAG; identity is object identity."""

    op: str
    inputs: tuple[Node, ...]
    shape: tuple[int, ...]
    dtype: str
    attrs: Any = None
    name: str | None = None
    stop_grad: bool = False


class Tensor:
    """A lazy tensor: a handle on a graph node. Nothing runs until `er.evaluate` or a Program."""

    __slots__ = ("node",)
    _einrel_tensor = True
    __array_priority__ = 1000

    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def shape(self) -> tuple[int, ...]:
        return self.node.shape

    @property
    def dtype(self) -> str:
        return self.node.dtype

    @property
    def ndim(self) -> int:
        return len(self.node.shape)

    @property
    def name(self) -> str | None:
        return self.node.name

    @property
    def size(self) -> int:
        return math.prod(self.node.shape)

    def graph(self) -> Graph:
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

    # Sugar lives in frontend.py; these forward to it.
    def _f(self) -> Any:
        from . import frontend

        return frontend

    def __add__(self, o: Any) -> Tensor:
        return self._f().add(self, o)

    def __radd__(self, o: Any) -> Tensor:
        return self._f().add(o, self)

    def __sub__(self, o: Any) -> Tensor:
        return self._f().subtract(self, o)

    def __rsub__(self, o: Any) -> Tensor:
        return self._f().subtract(o, self)

    def __mul__(self, o: Any) -> Tensor:
        return self._f().multiply(self, o)

    def __rmul__(self, o: Any) -> Tensor:
        return self._f().multiply(o, self)

    def __truediv__(self, o: Any) -> Tensor:
        return self._f().divide(self, o)

    def __rtruediv__(self, o: Any) -> Tensor:
        return self._f().divide(o, self)

    def __pow__(self, o: Any) -> Tensor:
        return self._f().power(self, o)

    def __rpow__(self, o: Any) -> Tensor:
        return self._f().power(o, self)

    def __neg__(self) -> Tensor:
        return self._f().negative(self)

    def __matmul__(self, o: Any) -> Tensor:
        return self._f().matmul(self, o)

    def __rmatmul__(self, o: Any) -> Tensor:
        return self._f().matmul(o, self)

    def __getitem__(self, index: Any) -> Tensor:
        return self._f().getitem(self, index)

    @property
    def T(self) -> Tensor:
        return self._f().transpose(self)

    def transpose(self, *axes: Any) -> Tensor:
        if len(axes) == 1 and not isinstance(axes[0], numbers.Integral):  # x.transpose((1, 0))
            axes = tuple(axes[0]) if axes[0] is not None else ()
        return self._f().transpose(self, axes or None)

    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return self._f().reduce(self, "sum", axis, keepdims)

    def max(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return self._f().reduce(self, "max", axis, keepdims)

    def min(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return self._f().reduce(self, "min", axis, keepdims)

    def prod(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return self._f().reduce(self, "prod", axis, keepdims)

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return self._f().mean(self, axis, keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        return self._f().reshape(self, shape[0] if len(shape) == 1 else shape)

    def astype(self, dtype: str) -> Tensor:
        return self._f().astype(self, dtype)


# --- the extracted graph ----------------------------------------------------------------------


@dataclass(frozen=True)
class GNode:
    """A graph node: `inputs` are ids of earlier nodes (ids are a topological order)."""

    id: int
    op: str
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    dtype: str
    attrs: Any
    name: str
    stop_grad: bool = False

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]

    @property
    def einsum(self) -> Einsum:
        assert self.op == "einsum", self
        return self.attrs


@dataclass(frozen=True)
class Graph:
    """Whole-tensor dataflow graph: nodes in topological order and the ids of the outputs."""

    nodes: tuple[GNode, ...]
    outputs: tuple[int, ...]
    _consumers: dict[int, tuple[int, ...]] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        cons: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for i in dict.fromkeys(n.inputs):
                cons[i].append(n.id)
        object.__setattr__(self, "_consumers", {k: tuple(v) for k, v in cons.items()})

    def __getitem__(self, i: int) -> GNode:
        return self.nodes[i]

    def __len__(self) -> int:
        return len(self.nodes)

    def consumers(self, i: int) -> tuple[int, ...]:
        """Distinct consumer ids of node i, in id order."""
        return self._consumers[i]

    @property
    def inputs(self) -> tuple[GNode, ...]:
        return tuple(n for n in self.nodes if n.op == "input")

    @property
    def variables(self) -> tuple[str, ...]:
        names: set[str] = set()
        for n in self.nodes:
            if n.op == "einsum":
                names |= n.einsum.join.variables()
        return tuple(sorted(names))

    def __str__(self) -> str:
        def ty(n: GNode) -> str:
            return f"{_SHORT[n.dtype]}[{','.join(map(str, n.shape))}]"

        args = ", ".join(f"{n.name}: {ty(n)}" for n in self.inputs)
        var = "; " + ", ".join("$" + v for v in self.variables) if self.variables else ""
        lines = [f"graph({args}{var}) {{"]
        for n in self.nodes:
            if n.op == "input":
                continue
            ins = ", ".join(self.nodes[i].name for i in n.inputs)
            what = str(n.attrs) + (" stop_grad" if n.stop_grad else "")
            lines.append(f"  {n.name} = {what}({ins})  : {ty(n)}")
        lines.append("  return " + ", ".join(self.nodes[i].name for i in self.outputs))
        lines.append("}")
        return "\n".join(lines)


def toposort(roots: Iterable[Node]) -> list[Node]:
    """Nodes reachable from `roots`, inputs before users (depth-first, operands in order)."""
    seen: set[int] = set()
    order: list[Node] = []
    for root in roots:
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, done = stack.pop()
            if id(node) in seen:
                continue
            if done:
                seen.add(id(node))
                order.append(node)
                continue
            stack.append((node, True))
            stack.extend((x, False) for x in reversed(node.inputs) if id(x) not in seen)
    return order


def build_graph(outputs: Iterable[Tensor]) -> Graph:
    """Number every node reachable from `outputs` (depth-first, operands in order) and check it."""
    outs = list(outputs)
    for t in outs:
        if not isinstance(t, Tensor):
            raise EinrelError(f"graph outputs must be einrel Tensors, got {type(t).__name__}")
    order = toposort(t.node for t in outs)
    ids = {id(node): i for i, node in enumerate(order)}
    names: dict[str, int] = {}
    nodes: list[GNode] = []
    for i, node in enumerate(order):
        name = node.name if node.op == "input" else f"%{i}"
        if node.op == "input":
            if name in names:
                raise EinrelError(
                    f"two different graph inputs are both named {name!r}; input names must be "
                    "unique because feeds are matched by name"
                )
            names[name] = i
        nodes.append(
            GNode(
                i,
                node.op,
                tuple(ids[id(x)] for x in node.inputs),
                node.shape,
                node.dtype,
                node.attrs,
                name,
                node.stop_grad,
            )
        )
    graph = Graph(tuple(nodes), tuple(ids[id(t.node)] for t in outs))
    clash = set(graph.variables) & set(names)
    if clash:
        raise EinrelError(
            f"names used both as graph inputs and run-time variables: {sorted(clash)}"
        )
    return graph
