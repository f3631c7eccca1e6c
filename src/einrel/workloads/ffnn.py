"""One SGD step of a feed-forward network: forward, loss, gradients of every weight, update.

Hidden layers use relu; the last layer is linear. The loss is softmax cross-entropy against
one-hot targets (`"ce"`) or mean squared error (`"mse"`). The learning rate is the run-time
variable `lr`, so one compiled graph serves every step. No biases: every layer is one einsum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .. import frontend as F
from ..errors import EinrelError
from .base import (
    Feeds,
    Workload,
    check_dtype,
    graph_flops,
    normal,
    pick_size,
    torch_train_step,
    train_outputs,
)

LOSSES = ("ce", "mse")


@dataclass(frozen=True)
class FFNNSize:
    """Batch, layer widths (input, hidden..., output) and the preset's loss and dtype."""

    batch: int
    widths: tuple[int, ...]
    loss: str = "ce"
    dtype: str = "float32"


SIZES: dict[str, FFNNSize] = {
    "tiny": FFNNSize(8, (12, 16, 16, 10)),
    "small": FFNNSize(128, (256, 512, 512, 64)),
    # The benchmark configuration: batch 4096, d 1024, hidden 4096, squared loss, float32.
    "bench": FFNNSize(4096, (1024, 4096, 1024), loss="mse", dtype="float32"),
}


def ffnn_train(
    size: str = "tiny",
    dtype: str | None = None,
    *,
    loss: str | None = None,
    batch: int | None = None,
    widths: Sequence[int] | None = None,
    lr: float = 0.1,
    with_grads: bool = False,
) -> Workload:
    """Outputs: loss, then (with_grads) each weight's gradient, then each updated weight."""
    cfg = pick_size(SIZES, size, "ffnn_train")
    cfg = replace(
        cfg,
        loss=loss or cfg.loss,
        dtype=dtype or cfg.dtype,
        batch=batch or cfg.batch,
        widths=tuple(widths) if widths is not None else cfg.widths,
    )
    dt = check_dtype(cfg.dtype, "ffnn_train")
    if cfg.loss not in LOSSES:
        raise EinrelError(f"ffnn_train: loss {cfg.loss!r} is not one of {LOSSES}")
    if len(cfg.widths) < 2:
        raise EinrelError(f"ffnn_train: widths {cfg.widths} need an input and an output width")
    n, dims = cfg.batch, cfg.widths
    x = F.input("x", (n, dims[0]), dt)
    y = F.input("y", (n, dims[-1]), dt)
    pairs = list(zip(dims, dims[1:]))
    weights = {f"w{i}": F.input(f"w{i}", ab, dt) for i, ab in enumerate(pairs)}
    h = x
    for i, w in enumerate(weights.values()):
        h = F.einsum("bi,io->bo", h, w)
        if i < len(weights) - 1:
            h = F.relu(h)
    value = F.cross_entropy(h, y) if cfg.loss == "ce" else F.mse(h, y)
    outputs, names = train_outputs(value, weights, with_grads)
    wnames = list(weights)

    def make_feeds(seed: int) -> Feeds:
        rng = np.random.default_rng(seed)
        feeds: Feeds = {"x": normal(rng, (n, dims[0]), dt)}
        if cfg.loss == "ce":
            onehot = np.zeros((n, dims[-1]), dtype=dt)
            onehot[np.arange(n), rng.integers(0, dims[-1], n)] = 1
            feeds["y"] = onehot
        else:
            feeds["y"] = normal(rng, (n, dims[-1]), dt)
        for k, (a, b) in zip(wnames, pairs):
            feeds[k] = normal(rng, (a, b), dt, (2.0 / a) ** 0.5)  # He init keeps relu layers O(1)
        feeds["lr"] = np.float64(lr)
        return feeds

    def forward(t: dict[str, torch.Tensor]) -> torch.Tensor:
        h = t["x"]
        for i, k in enumerate(wnames):
            h = h @ t[k]
            if i < len(wnames) - 1:
                h = torch.relu(h)
        if cfg.loss == "ce":
            return torch.nn.functional.cross_entropy(h, t["y"])
        return torch.nn.functional.mse_loss(h, t["y"])

    def torch_reference(feeds: Mapping[str, Any]) -> list[np.ndarray]:
        return torch_train_step(forward, feeds, ["x", "y"], wnames, with_grads)

    return Workload(
        name="ffnn_train",
        outputs=outputs,
        output_names=names,
        make_feeds=make_feeds,
        flops=graph_flops(outputs),
        torch_reference=torch_reference,
        meta={
            "size": size,
            "dtype": dt,
            "batch": n,
            "widths": dims,
            "loss": cfg.loss,
            "lr": lr,
            "weights": wnames,
            "with_grads": with_grads,
        },
    )
