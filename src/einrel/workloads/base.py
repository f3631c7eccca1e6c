"""The shape every workload takes, and the small helpers the workloads share.

A workload is a lazy einrel graph plus everything needed to run and check it: feeds, a plain
torch version of the same computation (the peer for tests and benchmarks) and a flop count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import frontend as F
from ..errors import EinrelError
from ..frontend.autodiff import grad
from ..frontend.tensor import Tensor, build_graph
from ..ir import scalar as S
from ..ir.graph import Graph

Feeds = dict[str, np.ndarray | float]

NP_DTYPES: dict[str, type[np.floating[Any]]] = {"float32": np.float32, "float64": np.float64}
TORCH_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Workload:
    """A lazy graph with its feeds, its torch twin and its cost.

    `make_feeds(seed)` returns inputs and run-time variables by name; `torch_reference(feeds)`
    returns the outputs in the order of `outputs`, computed with torch ops only.
    """

    name: str
    outputs: list[Tensor]
    output_names: list[str]
    make_feeds: Callable[[int], Feeds]
    flops: float
    torch_reference: Callable[[Mapping[str, Any]], list[np.ndarray]]
    meta: dict[str, Any] = field(default_factory=dict)

    def graph(self) -> Graph:
        """The whole-tensor graph of all outputs (cheap: nothing is evaluated)."""
        return build_graph(self.outputs)


def graph_flops(outputs: Sequence[Tensor]) -> float:
    """Scalar operations of every einsum in the graph (a contraction counts 2 per join element)."""
    graph = build_graph(outputs)
    return float(sum(n.einsum.flops() for n in graph.nodes if n.op == "einsum"))


def node_kinds(graph: Graph) -> dict[str, int]:
    """Node counts by kind; einsums are split into contraction, elementwise and reduction."""
    kinds: Counter[str] = Counter()
    for n in graph.nodes:
        if n.op != "einsum":
            kinds[n.op] += 1
        elif n.einsum.agg is None:
            kinds["einsum/elementwise"] += 1
        elif (
            n.einsum.agg == "sum"
            and n.einsum.arity >= 2
            and S.scaled_product(n.einsum.body.join) is not None
        ):
            kinds["einsum/contraction"] += 1
        else:
            kinds["einsum/reduction"] += 1
    return dict(sorted(kinds.items()))


def check_dtype(dtype: str, workload: str) -> str:
    if dtype not in NP_DTYPES:
        raise EinrelError(f"{workload}: dtype {dtype!r} is not one of {sorted(NP_DTYPES)}")
    return dtype


def pick_size(sizes: Mapping[str, Any], size: str, workload: str) -> Any:
    if size not in sizes:
        raise EinrelError(f"{workload}: unknown size {size!r}; expected one of {list(sizes)}")
    return sizes[size]


def normal(
    rng: np.random.Generator, shape: Sequence[int], dtype: str, scale: float = 1.0
) -> np.ndarray:
    """Standard normal values times `scale`, drawn directly in `dtype` (fast for float32)."""
    x = rng.standard_normal(tuple(shape), dtype=NP_DTYPES[dtype])
    if scale != 1.0:
        x *= NP_DTYPES[dtype](scale)
    return x


def to_torch(feeds: Mapping[str, Any], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Feeds as torch tensors sharing memory with the numpy arrays."""
    return {k: torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in names}


def to_numpy(ts: Sequence[torch.Tensor]) -> list[np.ndarray]:
    return [t.detach().numpy().copy() for t in ts]


def max_rel_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|: a scale-free error that ignores tiny entries' noise."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    scale = float(np.max(np.abs(want)))
    diff = float(np.max(np.abs(got - want)))
    return diff / scale if scale > 0 else diff


def sgd_step(weights: Sequence[Tensor], grads: Sequence[Tensor], lr: str = "lr") -> list[Tensor]:
    """w - lr*g with lr a run-time variable, so one graph serves every learning rate."""
    rate = F.var(lr)
    return [
        F.elementwise(lambda w, g: w - rate * g, w, g, what="sgd") for w, g in zip(weights, grads)
    ]


def torch_train_step(
    loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    feeds: Mapping[str, Any],
    data: Sequence[str],
    weights: Sequence[str],
    with_grads: bool,
) -> list[np.ndarray]:
    """The torch twin of loss + grad + SGD: [loss, *grads (if asked), *new weights]."""
    t = to_torch(feeds, [*data, *weights])
    for k in weights:
        t[k] = t[k].clone().requires_grad_(True)
    loss = loss_fn(t)
    grads = torch.autograd.grad(loss, [t[k] for k in weights])
    lr = float(feeds["lr"])
    with torch.no_grad():
        new = [t[k] - lr * g for k, g in zip(weights, grads)]
    return to_numpy([loss, *(grads if with_grads else ()), *new])


def train_outputs(
    loss: Tensor, weights: Mapping[str, Tensor], with_grads: bool
) -> tuple[list[Tensor], list[str]]:
    """[loss, *grads (if asked), *new weights] and their names."""
    names = list(weights)
    grads = grad(loss, [weights[k] for k in names])
    new = sgd_step([weights[k] for k in names], grads)
    outputs = [loss, *(grads if with_grads else ()), *new]
    out_names = ["loss", *(f"grad_{k}" for k in names if with_grads), *(f"new_{k}" for k in names)]
    return outputs, out_names
