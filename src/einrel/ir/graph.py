"""Lazy tensors and the whole-tensor dataflow graph they describe.

A `Tensor` wraps an immutable `Node`; nodes point at their inputs, so building a model builds a
DAG with no global state. `build_graph(outputs)` numbers the nodes reachable from the outputs in a
deterministic topological order and returns a `Graph`: plain data that prints like a jaxpr and is
what every later stage consumes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from ..errors import EinrelError, ShapeError
from .einsum import Einsum

DTYPES = ("float32", "float64", "float16", "bfloat16")


DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}


_SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16"}


Op = Literal[
    "input", "fill", "einsum", "slice", "concat", "reshape", "relation", "sparse", "densify"
]
OPS: tuple[Op, ...] = get_args(Op)


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


@dataclass(frozen=True, eq=False)
class Node:
    """One operation in the lazy DAG; identity is object identity."""

    op: Op
    inputs: tuple[Node, ...]
    shape: tuple[int, ...]
    dtype: str
    attrs: Any = None
    name: str | None = None
    stop_grad: bool = False


@dataclass(frozen=True)
class GNode:
    """A graph node: `inputs` are ids of earlier nodes (ids are a topological order)."""

    id: int
    op: Op
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    dtype: str
    attrs: Any
    name: str
    stop_grad: bool = False
    density: float = 1.0  # the share of its elements a tensor stores (a relation: tuples / keys)

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
    _consumers: dict[int, tuple[int, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )  # set by __post_init__

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
        """The dense graph inputs, fed by name, in id order."""
        return tuple(n for n in self.nodes if n.op == "input")

    @property
    def relations(self) -> tuple[GNode, ...]:
        """The relation inputs (sparse leaves fed by name, as inputs are)."""
        return tuple(n for n in self.nodes if n.op == "relation")

    @property
    def variables(self) -> tuple[str, ...]:
        """The run-time variables (`er.var`) the joins read, sorted by name."""
        names: set[str] = set()
        for n in self.nodes:
            if n.op == "einsum":
                names |= n.einsum.join.variables()
            elif n.op == "sparse":
                names |= n.attrs.einsum.join.variables()
        return tuple(sorted(names))

    def to_dot(self) -> str:
        """Graphviz DOT text of the graph: inputs, each einsum with its spec, operand edges.

        `render(path)` writes it, or draws it with graphviz."""
        from .dot import digraph, quote

        def label(n: GNode) -> str:
            ty = f"{_SHORT[n.dtype]}[{','.join(map(str, n.shape))}]"
            what = n.einsum.spec if n.op == "einsum" else str(n.attrs or n.op)
            return f"{n.name}\n{what}\n{ty}" if n.op != "input" else f"{n.name}\n{ty}"

        lines = []
        outs = set(self.outputs)
        for n in self.nodes:
            shape = "ellipse" if n.op == "input" else "box"
            extra = ", penwidth=2" if n.id in outs else ""
            lines.append(f"n{n.id} [label={quote(label(n))}, shape={shape}{extra}];")
        for n in self.nodes:
            many = len(n.inputs) > 1
            for k, i in enumerate(n.inputs):
                lines.append(f"n{i} -> n{n.id}" + (f" [label={k}];" if many else ";"))
        return digraph("graph", lines)

    def render(self, path: str | Path) -> Path:
        """`to_dot()` written to `path`: DOT text for `.dot`, a picture for `.png`, `.svg` or
        `.pdf` (drawn by graphviz, which must be installed)."""
        from .dot import render

        return render(self.to_dot(), path)

    def __str__(self) -> str:
        def ty(n: GNode) -> str:
            return f"{_SHORT[n.dtype]}[{','.join(map(str, n.shape))}]"

        args = ", ".join(
            f"{n.name}: {ty(n)}" + (f" {n.attrs}" if n.op == "relation" else "")
            for n in (*self.inputs, *self.relations)
        )
        var = "; " + ", ".join("$" + v for v in self.variables) if self.variables else ""
        lines = [f"graph({args}{var}) {{"]
        for n in self.nodes:
            if n.op in ("input", "relation"):
                continue
            ins = ", ".join(self.nodes[i].name for i in n.inputs)
            what = str(n.attrs) + (" stop_grad" if n.stop_grad else "")
            lines.append(f"  {n.name} = {what}({ins})  : {ty(n)}")
        lines.append("  return " + ", ".join(self.nodes[i].name for i in self.outputs))
        lines.append("}")
        return "\n".join(lines)


def check_name(name: Any) -> str:
    """A user-given node name: a non-empty string without `%` (which marks einrel's names)."""
    if not isinstance(name, str) or not name or "%" in name:
        raise EinrelError(f"a tensor name must be a non-empty string without '%', got {name!r}")
    return name


def node_name(given: str | None, i: int, taken: set[str]) -> str:
    """The graph name of node i: the user's name when it is free, else `name%i` (`%i` when
    unnamed), so names stay unique and every node can be found by name. A name einrel gave
    (`h%3`) counts as its user part (`h`), so renumbering a graph keeps user names."""
    user = (given or "").split("%")[0]
    if not user:
        return f"%{i}"
    return user if user not in taken else f"{user}%{i}"


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


def graph_of(roots: Sequence[Node]) -> Graph:
    """The graph of every node reachable from `roots` (the outputs, in order), numbered
    depth-first with operands in order, with input names and run-time variables checked."""
    order = toposort(roots)
    ids = {id(node): i for i, node in enumerate(order)}
    names: dict[str, int] = {}
    nodes: list[GNode] = []
    leaves = ("input", "relation")
    taken = {n.name for n in order if n.op in leaves and n.name is not None}
    for i, node in enumerate(order):
        if node.op not in leaves:
            name = node_name(node.name, i, taken)
            taken.add(name)
        else:
            assert node.name is not None, node  # er.input / er.relation always name their node
            name = node.name
            if name in names:
                raise EinrelError(
                    f"two different graph inputs or relations are both named {name!r}; their "
                    "names must be unique because feeds are matched by name"
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
    graph = Graph(tuple(nodes), tuple(ids[id(r)] for r in roots))
    clash = set(graph.variables) & set(names)
    if clash:
        raise EinrelError(
            f"names used both as graph inputs and run-time variables: {sorted(clash)}"
        )
    return graph
