"""User partitions in dask's chunk vocabulary, propagated to the rest of the graph (`apart03`).

`chunks={"x": (2048, -1), "w": "auto"}` per graph input, as `dask.array` spells it:
- an int is a block size (the last block may be smaller; a size ≥ the dim keeps it whole);
- -1 or None keeps the dim whole;
- "auto" gives the dim as many near-equal parts as the devices left over allow;
- a tuple of ints lists the block sizes explicitly (they must add up to the dim);
- one int, -1, None or "auto" alone applies to every dim; a dict {axis: chunk} names some dims.
The cuts spread along label classes (`classes.py`): every slot of the same class gets the same
split points; where two inputs cut one class differently their split points are merged.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from ..errors import CompileError
from ..ir.graph import GNode, Graph
from .candidates import check_ndev
from .classes import Slot, label_classes
from .partition import Partition
from .usage import Bounds, even_bounds, is_whole_reshape, partition_of, partition_shape

AUTO = "auto"


def _dim_bounds(node: GNode, d: int, spec: Any) -> Bounds | str:
    n = node.shape[d]
    where = f"chunks for input {node.name!r} of shape {node.shape}, dim {d}"
    if spec is None or (isinstance(spec, int) and not isinstance(spec, bool) and spec == -1):
        return (0, n)
    if spec == AUTO:
        return AUTO
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 1:
            raise CompileError(f"{where}: block size must be >= 1 (or -1 for whole), got {spec}")
        return (*range(0, n, spec), n)
    if isinstance(spec, tuple | list) and all(
        isinstance(c, int) and not isinstance(c, bool) for c in spec
    ):
        if any(c < 1 for c in spec) or sum(spec) != n:
            raise CompileError(
                f"{where}: explicit block sizes {tuple(spec)} must be >= 1 and add up to {n}"
            )
        return (0, *itertools.accumulate(spec))
    raise CompileError(
        f"{where}: expected an int block size, -1, None, 'auto' or a tuple of block sizes, "
        f"got {spec!r}"
    )


def input_bounds(node: GNode, spec: Any, ndev: int) -> tuple[Bounds, ...]:
    """Split points per dim of one input from its dask-style chunk spec."""
    rank = len(node.shape)
    if isinstance(spec, Mapping):
        bad = [a for a in spec if not isinstance(a, int) or not -rank <= a < rank]
        if bad:
            raise CompileError(
                f"chunks for input {node.name!r} of shape {node.shape} name axes {bad} "
                f"outside 0..{rank - 1}"
            )
        per: list[Any] = [None] * rank
        for a, c in spec.items():
            per[a % rank] = c
    elif isinstance(spec, tuple | list):
        per = list(spec)
    else:
        per = [spec] * rank
    if len(per) != rank:
        raise CompileError(
            f"chunks for input {node.name!r}: {len(per)} entries {tuple(per)} for a tensor of "
            f"rank {rank}, shape {node.shape}"
        )
    dims = [_dim_bounds(node, d, c) for d, c in enumerate(per)]
    left = ndev
    for b in dims:
        if b != AUTO:
            left = max(1, left // (len(b) - 1))
    out: list[Bounds] = []
    for d, b in enumerate(dims):
        if isinstance(b, str):  # AUTO
            parts = min(left, node.shape[d])
            left //= parts
            b = even_bounds(node.shape[d], parts)
        out.append(b)
    return tuple(out)


def chunks_partitioner(
    graph: Graph,
    ndev: int,
    *,
    chunks: Mapping[str, Any] | None = None,
) -> dict[int, Partition]:
    """Partitions from dask-style chunks on named inputs, spread along label classes."""
    check_ndev(ndev)
    if not isinstance(chunks, Mapping):
        raise CompileError(
            f"the chunks partitioner needs chunks={{input name: chunk spec}}, got {chunks!r}"
        )
    inputs = {n.name: n for n in graph.nodes if n.op == "input"}
    unknown = [k for k in chunks if k not in inputs]
    if unknown:
        raise CompileError(f"chunks name {unknown}, which are not graph inputs {sorted(inputs)}")
    classes = label_classes(graph)
    cut: dict[Slot, Bounds] = {}
    for name, spec in chunks.items():
        node = inputs[name]
        for d, b in enumerate(input_bounds(node, spec, ndev)):
            c = classes.of[node.id][d]
            cut[c] = tuple(sorted(set(cut[c]) | set(b))) if c in cut else b
    out: dict[int, Partition] = {}
    for n in graph.nodes:
        shape = partition_shape(n)
        if is_whole_reshape(graph, n):
            out[n.id] = Partition.whole(shape)
            continue
        grid = tuple(cut.get(c, (0, s)) for c, s in zip(classes.of[n.id], shape))
        out[n.id] = partition_of(grid)
    return out
