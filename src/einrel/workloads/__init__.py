"""Workloads shared by the demo, the tests and the benchmarks.

Each builder returns a `Workload`: a lazy einrel graph, its feeds, a plain torch twin and a flop
count. `get_workload("llama_block", size="tiny", dtype="float64", mode="train")` picks one by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import EinrelError
from . import chain, ffnn, llama
from .base import Feeds, Workload, graph_flops, max_rel_error, node_kinds
from .chain import matmul_chain
from .ffnn import ffnn_train
from .llama import llama_block

WORKLOADS: dict[str, Callable[..., Workload]] = {
    "matmul_chain": matmul_chain,
    "ffnn_train": ffnn_train,
    "llama_block": llama_block,
}

SIZES: dict[str, tuple[str, ...]] = {
    "matmul_chain": tuple(chain.SIZES),
    "ffnn_train": tuple(ffnn.SIZES),
    "llama_block": tuple(llama.SIZES),
}


def get_workload(
    name: str, size: str = "tiny", dtype: str | None = None, **options: Any
) -> Workload:
    """Build workload `name` at a named size; `dtype=None` keeps the size's default dtype."""
    if name not in WORKLOADS:
        raise EinrelError(f"unknown workload {name!r}; expected one of {sorted(WORKLOADS)}")
    if dtype is not None:
        options["dtype"] = dtype
    return WORKLOADS[name](size, **options)


__all__ = [
    "SIZES",
    "WORKLOADS",
    "Feeds",
    "Workload",
    "ffnn_train",
    "get_workload",
    "graph_flops",
    "llama_block",
    "matmul_chain",
    "max_rel_error",
    "node_kinds",
]
