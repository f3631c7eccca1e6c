"""Read and write Doppler's graph-file format, with errors that name file and line.

Line 1: node count N. Line 2: input ids. Lines 3/4: edge sources/destinations over the op lines.
Then one `comp,comm[,type]` line per op. Lists are comma-separated; the released files end lists
with ", ", so tokens are stripped and empty ones dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import CompileError, GraphFileError
from .dag import PlaceGraph


@dataclass(frozen=True)
class GraphFile:
    """A parsed file: the graph to place plus what the file says beyond it, kept for round trips."""

    graph: PlaceGraph
    input_ids: tuple[int, ...]
    op_types: tuple[str | None, ...]


def _tokens(line: str) -> list[str]:
    return [t for t in (part.strip() for part in line.split(",")) if t]


def _ints(line: str, source: str, lineno: int, what: str) -> list[int]:
    out: list[int] = []
    for tok in _tokens(line):
        try:
            out.append(int(tok))
        except ValueError:
            raise GraphFileError(f"{source}:{lineno}: {what}: {tok!r} is not an integer") from None
    return out


def _cost(tok: str, source: str, lineno: int, what: str) -> float:
    try:
        value = float(tok)
    except ValueError:
        raise GraphFileError(f"{source}:{lineno}: {what} {tok!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise GraphFileError(f"{source}:{lineno}: {what} {tok!r} must be finite and >= 0")
    return value


def parse_graph_text(text: str, source: str = "<string>", name: str | None = None) -> GraphFile:
    """Parse the text of a graph file; `source` names it in errors."""
    lines = text.splitlines()
    while len(lines) > 4 and not lines[-1].strip():
        lines.pop()
    if len(lines) < 4:
        raise GraphFileError(f"{source}:{len(lines) + 1}: expected 4 header lines, file ends")
    count = _ints(lines[0], source, 1, "node count")
    if len(count) != 1 or count[0] < 0:
        raise GraphFileError(f"{source}:1: expected one non-negative node count, got {lines[0]!r}")
    inputs = _ints(lines[1], source, 2, "input ids")
    srcs = _ints(lines[2], source, 3, "edge sources")
    dsts = _ints(lines[3], source, 4, "edge destinations")
    if len(srcs) != len(dsts):
        raise GraphFileError(
            f"{source}:4: {len(dsts)} edge destinations but line 3 has {len(srcs)} sources"
        )
    op_lines = lines[4:]
    m = count[0] - len(inputs)
    if len(op_lines) != m:
        lineno = 5 + min(len(op_lines), max(m, 0))
        raise GraphFileError(
            f"{source}:{lineno}: node count {count[0]} minus {len(inputs)} inputs gives {m} ops, "
            f"but the file has {len(op_lines)} op lines"
        )
    comp: list[float] = []
    comm: list[float] = []
    types: list[str | None] = []
    for i, line in enumerate(op_lines):
        lineno = 5 + i
        toks = _tokens(line)
        if len(toks) not in (2, 3):
            raise GraphFileError(f"{source}:{lineno}: op {i}: expected 'comp,comm[,type]'")
        comp.append(_cost(toks[0], source, lineno, f"op {i} compute cost"))
        comm.append(_cost(toks[1], source, lineno, f"op {i} comm cost"))
        types.append(toks[2] if len(toks) == 3 else None)
    for k, (a, b) in enumerate(zip(srcs, dsts)):
        for lineno, end in ((3, a), (4, b)):
            if not 0 <= end < m:
                raise GraphFileError(
                    f"{source}:{lineno}: edge {k} ({a}->{b}) names op {end}, ops are 0..{m - 1}"
                )
    try:
        graph = PlaceGraph(
            tuple(comp), tuple(comm), tuple(zip(srcs, dsts)), name=name or Path(source).stem
        )
    except CompileError as err:
        raise GraphFileError(f"{source}:3: {err}") from None
    return GraphFile(graph, tuple(inputs), tuple(types))


# Doppler's six released graphs (CC BY 4.0, see graphs/README.md) and the device count each
# was decomposed for.
RELEASED_DIR = Path(__file__).resolve().parent / "graphs"
RELEASED_GRAPHS: dict[str, int] = {
    "chain_mm_112nodes": 4,
    "ffnn_192nodes": 4,
    "transformer_block_215nodes": 4,
    "full_transformer_layer_261nodes": 4,
    "8gpu_transformer_block": 8,
    "8gpu_full_transformer": 8,
}


def released_graph_path(name: str) -> Path:
    """The shipped file of a released graph, by its name (`"ffnn_192nodes"`)."""
    if name not in RELEASED_GRAPHS:
        raise GraphFileError(
            f"no released graph named {name!r}; released: {', '.join(RELEASED_GRAPHS)}"
        )
    return RELEASED_DIR / f"{name}.txt"


def resolve_graph_path(path: str | Path) -> Path:
    """`path` itself when it exists, else the released graph of that name (with or without
    `.txt`), so that `ffnn_192nodes` names the shipped file."""
    p = Path(path)
    if p.exists():
        return p
    stem = p.name.removesuffix(".txt")
    if stem in RELEASED_GRAPHS and p.parent == Path("."):
        return released_graph_path(stem)
    return p


def read_graph_file(path: str | Path) -> GraphFile:
    """Read a graph file (a path, or a released graph's name), keeping input ids and op types."""
    p = resolve_graph_path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise GraphFileError(f"{p}: cannot read: {err.strerror}") from None
    return parse_graph_text(text, source=str(p), name=p.stem)


def load_graph_file(path: str | Path) -> PlaceGraph:
    """Read a graph file (a path or a released graph's name) and return the graph to place."""
    return read_graph_file(path).graph


def _num(x: float) -> str:
    return str(int(x)) if x.is_integer() else repr(x)


def _list_line(values: tuple[int, ...] | list[int]) -> str:
    return "".join(f"{v}, " for v in values)


def format_graph_text(
    graph: PlaceGraph,
    input_ids: tuple[int, ...] = (),
    op_types: tuple[str | None, ...] | None = None,
) -> str:
    """Write the released files' layout (lists end with ', ', no final newline)."""
    types = op_types or (None,) * graph.num_ops
    if len(types) != graph.num_ops:
        raise CompileError(f"{len(types)} op types for {graph.num_ops} ops")
    lines = [
        str(graph.num_ops + len(input_ids)),
        _list_line(input_ids),
        _list_line([a for a, _ in graph.edges]),
        _list_line([b for _, b in graph.edges]),
    ]
    for c, s, t in zip(graph.comp, graph.comm, types):
        lines.append(f"{_num(c)},{_num(s)}" + (f",{t}" if t is not None else ""))
    return "\n".join(lines)


def write_graph_file(
    path: str | Path,
    graph: PlaceGraph,
    input_ids: tuple[int, ...] = (),
    op_types: tuple[str | None, ...] | None = None,
) -> None:
    """Write `graph` so that `read_graph_file` gives it back."""
    Path(path).write_text(format_graph_text(graph, input_ids, op_types))
