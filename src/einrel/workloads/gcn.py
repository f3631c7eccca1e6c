"""A two-layer graph convolutional network (Kipf and Welling) trained in einrel.

    H = relu(Â X W0 + b0)   (dropout optional)     logits = Â H W1 + b1

with Â = D^-1/2 (A + I) D^-1/2 a relation on the graph's edges and self-loops, softmax cross
entropy on the labelled nodes, and an `er.optim` optimiser. Both aggregations are
`einsum("uv,ud->vd", A, ·)`: einrel cuts the relation by key ranges next to the dense tensors
and runs them as CSR products; their gradients are the same products on the transposed order,
so no E × d message tensor is ever made. The training step (forward, backward, update) is
compiled once and run every epoch with the learning rate and the Adam step as run-time
variables; held-out accuracy comes from a second compiled program, the forward pass alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import frontend as F
from ..devices import Devices, cpu
from ..errors import EinrelError
from ..frontend import optim
from ..frontend.autodiff import grad
from ..frontend.relation import coo, relation
from ..frontend.tensor import Tensor
from .graphs import GraphData, normalized_adjacency
from .training import History, fit

PARAMS = ("W0", "b0", "W1", "b1")
OPTIMIZERS = ("adam", "sgd")


@dataclass
class GcnModel:
    """The GCN's graph: `loss` and `logits` of the training step (with dropout), `update` the
    optimiser step, `eval_logits` the forward pass without dropout."""

    data: GraphData
    hidden: int
    dropout: float
    loss: Tensor
    logits: Tensor
    update: Any
    eval_logits: Tensor
    params: list[Tensor] = field(repr=False)

    @property
    def train_outputs(self) -> list[Tensor]:
        return [self.loss, self.logits, *self.update.outputs]


def build(
    data: GraphData,
    hidden: int = 16,
    dropout: float = 0.0,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    dtype: str = "float32",
) -> GcnModel:
    """The GCN for `data` as einrel tensors (see the module docstring)."""
    if optimizer not in OPTIMIZERS:
        raise EinrelError(f"gcn: optimizer {optimizer!r} is not one of {OPTIMIZERS}")
    if not 0.0 <= dropout < 1.0:
        raise EinrelError(f"gcn: dropout must lie in [0, 1), got {dropout}")
    n, f, c = data.nodes, data.features.shape[1], data.classes
    nnz = data.edges.shape[1] + n
    A = relation("A", keys={"u": n, "v": n}, nnz=nnz, dtype=dtype)
    X = F.input("X", (n, f), dtype)
    Y = F.input("Y", (n, c), dtype)  # one-hot labels of the training nodes / their count
    W0, b0 = F.input("W0", (f, hidden), dtype), F.input("b0", (hidden,), dtype)
    W1, b1 = F.input("W1", (hidden, c), dtype), F.input("b1", (c,), dtype)
    mask = F.input("D", (n, hidden), dtype) if dropout else None

    def forward(drop: Tensor | None) -> Tensor:
        xw = F.einsum("uf,fh->uh", X, W0)
        h = F.relu(F.einsum("uv,uh->vh", A, xw, name="aggregate1") + b0)
        if drop is not None:
            h = h * drop  # a mask of 0 and 1 / (1 - p), drawn every step
        hw = F.einsum("vh,hc->vc", h, W1)
        return F.einsum("uv,uc->vc", A, hw, name="aggregate2") + b1

    logits = forward(mask).named("logits")
    loss = F.einsum("vc,vc->", Y, F.log_softmax(logits, -1), join=lambda y, p: -y * p)
    params = [W0, b0, W1, b1]
    grads = grad(loss, params)
    lr = F.var("lr")
    opt: Any = (
        optim.Adam(lr=lr, weight_decay=weight_decay)
        if optimizer == "adam"
        else optim.SGD(lr=lr, momentum=0.9, weight_decay=weight_decay)
    )
    upd = opt.update(params, grads)
    return GcnModel(data, hidden, dropout, loss, logits, upd, forward(None), params)


def init_params(data: GraphData, hidden: int, seed: int) -> dict[str, np.ndarray]:
    """Glorot-uniform weights and zero biases (torch_geometric's GCNConv initialisation)."""
    rng = np.random.default_rng(seed)
    f, c = data.features.shape[1], data.classes

    def glorot(a: int, b: int) -> np.ndarray:
        lim = np.sqrt(6.0 / (a + b))
        return rng.uniform(-lim, lim, (a, b)).astype(np.float32)

    return {
        "W0": glorot(f, hidden),
        "b0": np.zeros(hidden, np.float32),
        "W1": glorot(hidden, c),
        "b1": np.zeros(c, np.float32),
    }


def data_feeds(data: GraphData) -> dict[str, Any]:
    """The graph's feeds: Â as an er.coo, X, and the training targets Y."""
    idx, vals = normalized_adjacency(data.edges, data.nodes)
    y = np.zeros((data.nodes, data.classes), np.float32)
    rows = np.flatnonzero(data.train)
    y[rows, data.labels[rows]] = 1.0 / rows.size
    return {"A": coo(idx, vals), "X": data.features, "Y": y}


def accuracy(logits: np.ndarray, data: GraphData, mask: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits[mask], axis=1) == data.labels[mask]))


@dataclass
class Trained:
    """A finished training run: its history, final parameters and final test accuracy."""

    history: History
    params: dict[str, np.ndarray]
    test_accuracy: float
    compile_s: float


def train(
    data: GraphData,
    epochs: int = 200,
    hidden: int = 16,
    lr: float = 0.01,
    dropout: float = 0.0,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    devices: Devices | None = None,
    seed: int = 0,
    progress: bool = True,
    every: int = 10,
    compile_options: Mapping[str, Any] | None = None,
) -> Trained:
    """Train the GCN on `data` for `epochs` full-graph steps; validation and test accuracy
    every `every` epochs, on the forward pass without dropout."""
    import time

    from ..program import compile as compile_

    model = build(data, hidden, dropout, optimizer, weight_decay)
    devs = devices if devices is not None else cpu(2)
    opts = {"progress": False, **(compile_options or {})}
    t0 = time.perf_counter()
    step = compile_(model.train_outputs, devices=devs, **opts)
    evaluate = compile_(model.eval_logits, devices=devs, **opts)
    compile_s = time.perf_counter() - t0
    feeds = {**data_feeds(data), **init_params(data, hidden, seed), **model.update.init_state()}
    rng = np.random.default_rng(seed + 7)
    keep = 1.0 - dropout

    def epoch(e: int) -> float:
        run = {**feeds, "lr": lr, **model.update.variables(e)}
        if dropout:
            run["D"] = (rng.random((data.nodes, hidden)) < keep).astype(np.float32) / keep
        loss, _, *new = step(run)
        feeds.update(model.update.next_feeds(new))
        return float(loss)

    def measure() -> dict[str, float]:
        logits = evaluate({k: v for k, v in feeds.items() if k in ("A", "X", *PARAMS)})
        masks = {"val": data.val, "test": data.test}
        return {k: accuracy(logits, data, m) for k, m in masks.items() if m.any()}

    try:
        hist = fit(f"einrel gcn {data.name}", epochs, epoch, measure, every, progress)
    finally:
        step.close()
        evaluate.close()
    params = {k: feeds[k] for k in PARAMS}
    return Trained(hist, params, hist.last("test"), compile_s)
