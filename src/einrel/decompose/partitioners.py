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

from ..errors import CompileError
from ..ir.graph import Graph
from .baselines import data_parallel, largest_dim, model_parallel, whole
from .chunks import chunks_partitioner
from .eindecomp import eindecomp
from .partition import Partition

Decomposition = dict[int, Partition]


@dataclasses.dataclass(frozen=True)
class Partitioner:
    """Base of every partitioner: `partitioner(graph, ndev)` -> a partition per node."""

    name: ClassVar[str] = ""
    function: ClassVar[Callable[..., Decomposition]]

    def __call__(self, graph: Graph, ndev: int) -> Decomposition:
        return type(self).function(graph, ndev, **self.options())

    def options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __str__(self) -> str:
        """The name, with the options that differ from their defaults."""
        changed = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        }
        opts = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{self.name}({opts})" if opts else self.name


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
    if isinstance(spec, Partitioner):
        cls: type[Partitioner] = type(spec)
        base = spec.options()
    else:
        found = PARTITIONERS.get(spec) if isinstance(spec, str) else None
        if found is None:
            raise CompileError(
                f"unknown partitioner {spec!r}; valid names: {', '.join(PARTITIONERS)}"
            )
        cls, base = found, {}
    valid = [f.name for f in dataclasses.fields(cls)]
    bad = sorted(set(options) - set(valid))
    if bad:
        raise CompileError(
            f"partitioner {cls.name!r} has no option(s) {bad}; its options: "
            f"{', '.join(valid) or 'none'}"
        )
    if not options and isinstance(spec, Partitioner):
        return spec
    return cls(**{**base, **options})
