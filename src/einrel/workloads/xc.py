"""Extreme classification with multiple label hashing: L labels hashed by R independent
functions into B buckets each, a network that predicts R softmaxes of width B, and a label's
score the mean of its buckets' probabilities (the setting of FedMLH and MACH).

A step reads a batch of examples as relations: their sparse features X(n, f) (bag of
features with values) and their hashed targets T(n, r, b), the share of the example's labels
that hash r puts in bucket b (each example's R rows sum to one):

    h      = relu(einsum("nf,fh->nh", X, W1) + b1)
    z      = einsum("nh,hrb->nrb", h, W2) + b2
    loss   = -Σ T · log_softmax_b(z) / Σ T                   (cross entropy per hash)

Prediction scores every label through the hash relation H(r, b, l), one tuple per (hash,
label) at the label's bucket: `einsum("rbl,nrb->nl", H, softmax_b(z)) / R`. The parameters and
the activations of the output layer shrink from L to R·B; with R = 1 and B = L (identity
hash) the same code is the full-softmax model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import frontend as F
from ..devices import Devices
from ..errors import EinrelError
from ..frontend.autodiff import grad
from ..frontend.nn import log_softmax, softmax
from ..frontend.relation import coo, relation
from ..frontend.tensor import Tensor
from .labels import MultiLabel, Rows, label_hashes, precision_at
from .training import Stepper, Trained, make_optimizer, run_trainer
from .training import torch_grad as _grad

PARAMS = ("W1", "b1", "W2", "b2")


@dataclass(frozen=True)
class XCConfig:
    """The hashes R, buckets B (R=1, B=L: a full softmax), hidden width, batch and rate."""

    hashes: int = 4
    buckets: int = 2048
    hidden: int = 128
    batch: int = 1024
    lr: float = 1e-3
    optimizer: str = "adam"
    seed: int = 0  # of the hash functions

    def __post_init__(self) -> None:
        if min(self.hashes, self.buckets, self.hidden, self.batch) < 1:
            raise EinrelError(f"xc: sizes must be positive, got {self}")


@dataclass
class XCModel:
    config: XCConfig
    loss: Tensor
    scores: Tensor  # (batch, labels): every label's score
    update: Any
    params: list[Tensor]

    @property
    def train_outputs(self) -> list[Tensor]:
        return [self.loss, *self.update.outputs]


def limits(data: MultiLabel, batch: int) -> tuple[int, int]:
    """Bounds on a batch's feature tuples and label tuples (the relations' nnz)."""
    most = [max(np.diff(r.x_ptr).max(), 1) for r in (data.train, data.test)]
    labs = max(np.diff(data.train.y_ptr).max(), 1)
    return batch * int(max(most)), batch * int(labs)


def _logits(X: Tensor, data: MultiLabel, cfg: XCConfig) -> tuple[Tensor, list[Tensor]]:
    R, B, H = cfg.hashes, cfg.buckets, cfg.hidden
    W1, b1 = F.input("W1", (data.features, H)), F.input("b1", (H,))
    W2, b2 = F.input("W2", (H, R, B)), F.input("b2", (R, B))
    h = F.relu(F.einsum("nf,fh->nh", X, W1) + b1)
    return F.einsum("nh,hrb->nrb", h, W2) + b2, [W1, b1, W2, b2]


def label_scores(data: MultiLabel, cfg: XCConfig, batch: int | None = None) -> Tensor:
    """Every label's score for a batch of examples (default: the training batch), through
    the hash relation H (see the module docstring)."""
    n = batch or cfg.batch
    X = relation("X", keys={"n": n, "f": data.features}, nnz=limits(data, n)[0])
    return _hash_scores(_logits(X, data, cfg)[0], data, cfg)


def _hash_scores(z: Tensor, data: MultiLabel, cfg: XCConfig) -> Tensor:
    R, B, L = cfg.hashes, cfg.buckets, data.labels
    Hr = relation("H", keys={"r": R, "b": B, "l": L}, nnz=R * L)
    return F.einsum("rbl,nrb->nl", Hr, softmax(z)) * (1.0 / R)


def build(data: MultiLabel, cfg: XCConfig) -> XCModel:
    """The training step and the label scores of its batch (see the module docstring)."""
    N, R, B = cfg.batch, cfg.hashes, cfg.buckets
    feats, labs = limits(data, N)
    X = relation("X", keys={"n": N, "f": data.features}, nnz=feats)
    T = relation("T", keys={"n": N, "r": R, "b": B}, nnz=labs * R)
    z, params = _logits(X, data, cfg)
    loss = -F.einsum("nrb,nrb->", T, log_softmax(z)) / F.einsum("nrb->", T)
    scores = _hash_scores(z, data, cfg)
    upd = make_optimizer(cfg.optimizer, F.var("lr")).update(params, grad(loss, params))
    return XCModel(cfg, loss, scores, upd, params)


def features_feed(rows: Rows) -> Any:
    return coo(np.stack([rows.row_of(rows.x_ptr), rows.x_idx]), rows.x_val)


def targets_feed(rows: Rows, hashes: np.ndarray) -> Any:
    """T for a batch: each of an example's labels adds 1/|labels| at its bucket, per hash."""
    n = rows.row_of(rows.y_ptr)
    share = (1.0 / np.maximum(np.diff(rows.y_ptr), 1))[n].astype(np.float32)  # none: no tuple
    R = hashes.shape[0]
    idx = np.stack([np.tile(n, R), np.repeat(np.arange(R, dtype=np.int32), n.size),
                    hashes[:, rows.y_idx].ravel()])  # fmt: skip
    return coo(idx, np.tile(share, R), coalesce=True)


def hash_feed(hashes: np.ndarray) -> Any:
    R, L = hashes.shape
    idx = np.stack([np.repeat(np.arange(R, dtype=np.int32), L), hashes.ravel(),
                    np.tile(np.arange(L, dtype=np.int32), R)])  # fmt: skip
    return coo(idx, np.ones(R * L, np.float32))


def init_params(data: MultiLabel, cfg: XCConfig, seed: int) -> dict[str, np.ndarray]:
    """Glorot-uniform weights, zero biases."""
    rng = np.random.default_rng(seed)

    def glorot(fan_in: int, fan_out: int, shape: tuple[int, ...]) -> np.ndarray:
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, shape).astype(np.float32)

    R, B, H = cfg.hashes, cfg.buckets, cfg.hidden
    return {
        "W1": glorot(data.features, H, (data.features, H)),
        "b1": np.zeros(H, np.float32),
        "W2": glorot(H, R * B, (H, R, B)),
        "b2": np.zeros((R, B), np.float32),
    }


def parameter_bytes(data: MultiLabel, cfg: XCConfig) -> dict[str, int]:
    """Bytes of the whole model and of its output layer (float32)."""
    out = 4 * (cfg.hidden + 1) * cfg.hashes * cfg.buckets
    return {"model": 4 * (data.features + 1) * cfg.hidden + out, "output_layer": out}


def torch_twin(
    d: MultiLabel, cfg: XCConfig, rows: Rows, params: Mapping[str, np.ndarray], hashes: np.ndarray
) -> list:
    """Loss, gradients and label scores written in float64 torch from the definitions (the
    demo and the tests check the compiled programs against it)."""
    import torch

    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    x = torch.zeros((rows.n, d.features), dtype=torch.float64)
    x[torch.from_numpy(rows.row_of(rows.x_ptr)).long(), torch.from_numpy(rows.x_idx).long()] = (
        torch.from_numpy(rows.x_val.astype(np.float64))
    )
    h = torch.relu(x @ p["W1"] + p["b1"])
    z = torch.einsum("nh,hrb->nrb", h, p["W2"]) + p["b2"]
    logp = torch.log_softmax(z, -1)
    loss: Any = torch.zeros((), dtype=torch.float64)
    for n in range(rows.n):
        ys = rows.y_idx[rows.y_ptr[n] : rows.y_ptr[n + 1]]
        for r in range(cfg.hashes):
            loss = loss - logp[n, r, hashes[r, ys]].mean()
    loss = loss / (rows.n * cfg.hashes)
    loss.backward()
    probs = torch.softmax(z, -1).detach().numpy()
    scores = probs[:, np.arange(cfg.hashes)[:, None], hashes].mean(1)  # (n, labels)
    return [float(loss.detach()), *(_grad(p[k]) for k in PARAMS), scores]


class Trainer:
    """One compiled training step and one compiled scoring program: `epoch()` trains on
    shuffled batches, `measure()` reports precision@1 and @5 on up to `eval_limit` test
    examples, scoring every label."""

    def __init__(
        self,
        data: MultiLabel,
        cfg: XCConfig,
        devices: Devices | None = None,
        seed: int = 0,
        eval_limit: int = 2_000,
        compile_options: Mapping[str, Any] | None = None,
        eval_batch: int = 256,
    ) -> None:
        from ..program import compile as compile_

        self.data, self.cfg = data, cfg
        self.model = build(data, cfg)
        self.hashes = label_hashes(data.labels, cfg.hashes, cfg.buckets, cfg.seed)
        params = init_params(data, cfg, seed)
        self.stepper = Stepper(
            self.model.train_outputs, self.model.update, params, cfg.lr, devices, compile_options
        )
        opts = {"progress": False, **(compile_options or {})}
        self.eval_batch = eval_batch
        scores = label_scores(data, cfg, eval_batch)
        self.predict = compile_([scores], devices=self.stepper.devices, **opts)
        self.H = hash_feed(self.hashes)
        self.rng = np.random.default_rng(seed + 1)
        self.test = data.test.take(np.arange(min(eval_limit, data.test.n)))

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {k: self.stepper.feeds[k] for k in PARAMS}

    def step(self, rows: Rows) -> float:
        return self.stepper.step({"X": features_feed(rows), "T": targets_feed(rows, self.hashes)})

    def epoch(self, e: int = 0) -> float:
        order = self.rng.permutation(self.data.train.n)
        b = self.cfg.batch
        steps = max(1, order.size // b)  # the last partial batch is dropped
        return float(np.mean([self.step(self.data.train.take(order[k * b : (k + 1) * b]))
                              for k in range(steps)]))  # fmt: skip

    def scores(self, rows: Rows) -> np.ndarray:
        """Every label's score for each example of `rows` (at most `eval_batch`)."""
        feeds = {"X": features_feed(rows), "H": self.H, **self.params}
        (s,) = self.predict(feeds, strict=False)
        return s[: rows.n]

    def measure(self) -> dict[str, float]:
        b, parts = self.eval_batch, []
        for lo in range(0, self.test.n, b):
            rows = self.test.take(np.arange(lo, min(lo + b, self.test.n)))
            m = precision_at(self.scores(rows), rows)
            parts.append((rows.n, m))
        total = sum(n for n, _ in parts)
        return {k: sum(n * m[k] for n, m in parts) / total for k in parts[0][1]}

    def close(self) -> None:
        self.stepper.close()
        self.predict.close()


def train(
    data: MultiLabel,
    cfg: XCConfig,
    epochs: int = 5,
    devices: Devices | None = None,
    seed: int = 0,
    progress: bool = True,
    every: int = 1,
    eval_limit: int = 2_000,
    compile_options: Mapping[str, Any] | None = None,
) -> Trained:
    """Train for `epochs` passes (see `Trainer`), measuring every `every` epochs and last."""
    t = Trainer(data, cfg, devices, seed, eval_limit, compile_options)
    kind = "softmax" if cfg.hashes == 1 and cfg.buckets == data.labels else "mlh"
    return run_trainer(t, f"einrel xc {kind} {data.name}", epochs, every, progress)
