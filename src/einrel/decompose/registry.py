"""Partitioners by name, all `(graph, ndev, **options) -> {node id: Partition}`.

`get_partitioner(name)` returns the function with its options checked by name, so a misspelt
option fails at compile time with the list of valid ones instead of being ignored.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ..errors import CompileError
from ..ir.graph import Graph
from .baselines import data_parallel, largest_dim, model_parallel, whole
from .chunks import chunks_partitioner
from .eindecomp import eindecomp
from .partition import Partition

Partitioner = Callable[..., dict[int, Partition]]

PARTITIONERS: Mapping[str, Partitioner] = MappingProxyType(
    {
        "eindecomp": eindecomp,
        "data-parallel": data_parallel,
        "model-parallel": model_parallel,
        "largest-dim": largest_dim,
        "none": whole,
        "chunks": chunks_partitioner,
    }
)


def options_of(fn: Partitioner) -> tuple[str, ...]:
    sig = inspect.signature(fn)
    return tuple(p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY)


def get_partitioner(name: str) -> Partitioner:
    """The partitioner registered as `name`; unknown names and options raise CompileError."""
    fn = PARTITIONERS.get(name) if isinstance(name, str) else None
    if fn is None:
        raise CompileError(f"unknown partitioner {name!r}; valid names: {', '.join(PARTITIONERS)}")
    valid = options_of(fn)

    @functools.wraps(fn)
    def checked(graph: Graph, ndev: int, **options: Any) -> dict[int, Partition]:
        bad = sorted(set(options) - set(valid))
        if bad:
            raise CompileError(
                f"partitioner {name!r} has no option(s) {bad}; its options: {', '.join(valid)}"
            )
        return fn(graph, ndev, **options)

    return checked
