"""Partitioners: one registry, options as fields (`er.partitioners.EinDecomp(sweeps=1)`).

Each partitioner is a function `(graph, ndev, *, options...) -> {node id: Partition}`; its
class here is a frozen dataclass made from the function's keyword options, so the two never
disagree. `get_partitioner("data-parallel", data=["x"])` or `get_partitioner(DataParallel(...))`
returns one; unknown names and options are a CompileError listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from ..ir.graph import Graph
from ..options import Strategy, resolve
from .baselines import data_parallel, largest_dim, model_parallel, whole
from .chunks import chunks_partitioner
from .eindecomp import eindecomp
from .partition import Partition

Decomposition = dict[int, Partition]


@dataclasses.dataclass(frozen=True)
class Partitioner(Strategy):
    """Base of every partitioner: `partitioner(graph, ndev)` -> a partition per node."""

    name: ClassVar[str] = ""
    function: ClassVar[Callable[..., Decomposition]]

    def __call__(self, graph: Graph, ndev: int) -> Decomposition:
        return type(self).function(graph, ndev, **self.options())


def _partitioner(cls_name: str, name: str, fn: Callable[..., Decomposition]) -> type[Partitioner]:
    """A Partitioner subclass whose fields are `fn`'s keyword options (with their defaults)."""
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name != "memory"
    ]
    fields = [(p.name, Any, dataclasses.field(default=p.default)) for p in params]
    cls = dataclasses.make_dataclass(
        cls_name,
        fields,
        bases=(Partitioner,),
        frozen=True,
        namespace={"name": name, "function": staticmethod(fn), "__doc__": fn.__doc__},
    )
    cls.__module__ = __name__
    return cls


EinDecomp = _partitioner("EinDecomp", "eindecomp", eindecomp)
DataParallel = _partitioner("DataParallel", "data-parallel", data_parallel)
ModelParallel = _partitioner("ModelParallel", "model-parallel", model_parallel)
LargestDim = _partitioner("LargestDim", "largest-dim", largest_dim)
Whole = _partitioner("Whole", "none", whole)
Chunks = _partitioner("Chunks", "chunks", chunks_partitioner)

PARTITIONERS: Mapping[str, type[Partitioner]] = MappingProxyType(
    {cls.name: cls for cls in (EinDecomp, DataParallel, ModelParallel, LargestDim, Whole, Chunks)}
)


def get_partitioner(spec: str | Partitioner, **options: Any) -> Partitioner:
    """The partitioner `spec` names (or `spec` itself), with `options` set; unknown names and
    options raise CompileError listing the valid ones."""
    return resolve("partitioner", Partitioner, PARTITIONERS, spec, options)
