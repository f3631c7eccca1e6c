"""Knowledge-graph embeddings in einrel: TransE and DistMult trained with negative sampling and
a margin ranking loss, the setting of PyKEEN's stochastic local closed-world training.

A step reads a batch of B training triples and K corruptions of each (its head or its tail
replaced by a uniformly drawn other entity), drawn afresh every step, as two relations whose
first key `t` is the triple's place in the batch:

    T(t, h, r, o)       one tuple per triple
    N(t, k, h, r, o)    K tuples per triple: the k-th corruption

Scores are einsums over them with the entity table E (entities × d) and the relation table R:

    TransE     s = -Σ_d |E[h] + R[r] - E[o]|     einsum("thro,hd,rd,od->t", ..., join=...)
    DistMult   s =  Σ_d E[h] R[r] E[o]           einsum("thro,hd,rd,od->t", T, E, R, E)

and the loss is the mean of relu(margin - s⁺[t] + s⁻[t, k]) over the corruptions present (a
batch may be shorter than B). After each optimiser update every entity vector is scaled to unit
length (PyKEEN's entity constraint for both models), inside the same compiled step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import frontend as F
from ..devices import Devices
from ..errors import EinrelError
from ..frontend.autodiff import grad
from ..frontend.relation import coo, relation
from ..frontend.tensor import Tensor
from .training import Stepper, Trained, make_optimizer, run_trainer
from .training import torch_grad as _grad
from .triples import Triples, filtered_ranks, rank_metrics

MODELS = ("transe", "distmult")


@dataclass(frozen=True)
class KGEConfig:
    """What to train: the model, embedding width, batch, corruptions per triple, margin and
    optimiser."""

    model: str = "transe"
    dim: int = 64
    batch: int = 256
    negatives: int = 1
    margin: float = 1.0
    lr: float = 1e-2
    optimizer: str = "adam"

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise EinrelError(f"kge: model {self.model!r} is not one of {MODELS}")
        if min(self.dim, self.batch, self.negatives) < 1 or self.margin < 0:
            raise EinrelError(f"kge: sizes must be positive and the margin not negative: {self}")


@dataclass
class KGEModel:
    config: KGEConfig
    loss: Tensor
    update: Any
    params: list[Tensor]

    @property
    def train_outputs(self) -> list[Tensor]:
        return [self.loss, *self.update.outputs]


def _score(cfg: KGEConfig, spec: str, rel: Tensor, E: Tensor, R: Tensor) -> Tensor:
    if cfg.model == "distmult":
        return F.einsum(spec, rel, E, R, E)
    return F.einsum(spec, rel, E, R, E, join=lambda w, h, r, o: -w * F.abs_(h + r - o))


def unit_rows(x: Tensor) -> Tensor:
    """Every row scaled to unit L2 length (a zero row stays zero)."""
    norms = F.sqrt(F.einsum("nd,nd->n", x, x))
    return F.einsum("nd,n->nd", x, norms, join=lambda v, s: v / F.maximum(s, 1e-12))


def build(entities: int, relations: int, cfg: KGEConfig) -> KGEModel:
    """The training step's graph (see the module docstring)."""
    N, M, d, B, K = entities, relations, cfg.dim, cfg.batch, cfg.negatives
    E, R = F.input("E", (N, d)), F.input("R", (M, d))
    pos = relation("T", keys={"t": B, "h": N, "r": M, "o": N}, nnz=B)
    neg = relation("N", keys={"t": B, "k": K, "h": N, "r": M, "o": N}, nnz=B * K)
    sp = _score(cfg, "thro,hd,rd,od->t", pos, E, R)
    sn = _score(cfg, "tkhro,hd,rd,od->tk", neg, E, R)
    per = F.einsum("tk,t->tk", sn, sp, join=lambda n, p: F.relu(n - p + cfg.margin))
    present = F.einsum("tkhro->tk", neg)
    loss = F.einsum("tk,tk->", per, present) / F.einsum("tk->", present)
    params = [E, R]
    upd = make_optimizer(cfg.optimizer, F.var("lr")).update(params, grad(loss, params))
    upd = dataclasses.replace(upd, params=[unit_rows(upd.params[0]), upd.params[1]])
    return KGEModel(cfg, loss, upd, params)


def corrupt(
    batch: np.ndarray, entities: int, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """K corruptions of each triple of `batch` (3, b): the head or the tail (even odds)
    replaced by a uniform draw among the other entities. Returns (heads, tails), b·K each,
    triple by triple."""
    h, o = np.repeat(batch[0], k), np.repeat(batch[2], k)
    draw = rng.integers(0, entities - 1, h.size, dtype=np.int32)
    tail = rng.random(h.size) < 0.5
    old = np.where(tail, o, h)
    new = (draw + (draw >= old)).astype(np.int32)  # skips the entity it replaces
    return np.where(tail, h, new).astype(np.int32), np.where(tail, new, o).astype(np.int32)


def batch_feeds(
    batch: np.ndarray, entities: int, k: int, rng: np.random.Generator
) -> dict[str, Any]:
    """T and N for a batch of triples."""
    b = batch.shape[1]
    t = np.arange(b, dtype=np.int32)
    h, o = corrupt(batch, entities, k, rng)
    neg = [np.repeat(t, k), np.tile(np.arange(k, dtype=np.int32), b), h, np.repeat(batch[1], k), o]
    return {"T": coo(np.stack([t, *batch])), "N": coo(np.stack(neg))}


def init_params(entities: int, relations: int, dim: int, seed: int) -> dict[str, np.ndarray]:
    """Uniform in ±6/√d (TransE's initialisation), every vector then scaled to unit length."""
    rng = np.random.default_rng(seed)
    bound = 6.0 / np.sqrt(dim)
    out = {}
    for name, n in (("E", entities), ("R", relations)):
        x = rng.uniform(-bound, bound, (n, dim))
        out[name] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def scorer(model: str, E: np.ndarray, R: np.ndarray) -> Any:
    """Scores against every entity, for the filtered ranking (see triples.Scorer)."""

    def score(fixed: np.ndarray, rel: np.ndarray, side: str) -> np.ndarray:
        a, r = E[fixed], R[rel]
        if model == "distmult":
            return (a * r) @ E.T
        query = a + r if side == "tail" else a - r  # tail ≈ h + r; head ≈ o - r
        return -np.abs(query[:, None, :] - E[None, :, :]).sum(-1)

    return score


def evaluate(
    model: str, E: np.ndarray, R: np.ndarray, data: Triples, triples: np.ndarray
) -> dict[str, float]:
    """Filtered MRR and Hits@1/3/10 over both sides of `triples`."""
    chunk = max(1, (1 << 24) // max(1, data.entities * (E.shape[1] if model == "transe" else 1)))
    return rank_metrics(filtered_ranks(scorer(model, E, R), data, triples, chunk))


def torch_twin(cfg: KGEConfig, feeds: Mapping[str, Any], params: Mapping[str, np.ndarray]) -> list:
    """The loss and the gradients of E and R written in float64 torch from the definitions
    (the demo and the tests check the compiled step against it)."""
    import torch

    E, R = (torch.tensor(params[k], dtype=torch.float64, requires_grad=True) for k in "ER")
    pos = torch.from_numpy(feeds["T"].indices.astype(np.int64))
    neg = torch.from_numpy(feeds["N"].indices.astype(np.int64))

    def score(h: Any, r: Any, o: Any) -> Any:
        if cfg.model == "distmult":
            return (E[h] * R[r] * E[o]).sum(-1)
        return -(E[h] + R[r] - E[o]).abs().sum(-1)

    sp = score(pos[1], pos[2], pos[3])
    sn = score(neg[2], neg[3], neg[4]).view(-1, cfg.negatives)
    loss = torch.relu(cfg.margin - sp[:, None] + sn).mean()
    loss.backward()
    return [float(loss.detach()), _grad(E), _grad(R)]


class Trainer:
    """One compiled training step with its feeds: `epoch()` trains on every training triple
    in shuffled batches (the last one shorter), corruptions drawn afresh every step;
    `measure()` ranks the test triples (up to `eval_limit` of them, drawn once)."""

    def __init__(
        self,
        data: Triples,
        cfg: KGEConfig,
        devices: Devices | None = None,
        seed: int = 0,
        eval_limit: int = 5_000,
        compile_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.data, self.cfg = data, cfg
        model = build(data.entities, data.relations, cfg)
        params = init_params(data.entities, data.relations, cfg.dim, seed)
        self.stepper = Stepper(
            model.train_outputs, model.update, params, cfg.lr, devices, compile_options
        )
        self.rng = np.random.default_rng(seed + 1)
        test = data.test
        if test.shape[1] > eval_limit:
            pick = np.random.default_rng(seed + 2).choice(test.shape[1], eval_limit, replace=False)
            test = test[:, np.sort(pick)]
        self.test = test

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {k: self.stepper.feeds[k] for k in ("E", "R")}

    def step(self, batch: np.ndarray) -> float:
        return self.stepper.step(
            batch_feeds(batch, self.data.entities, self.cfg.negatives, self.rng)
        )

    def epoch(self, e: int = 0) -> float:
        order = self.rng.permutation(self.data.train.shape[1])
        b = self.cfg.batch
        losses = [
            self.step(self.data.train[:, order[lo : lo + b]]) for lo in range(0, order.size, b)
        ]
        return float(np.mean(losses))

    def measure(self) -> dict[str, float]:
        p = self.params
        return evaluate(self.cfg.model, p["E"], p["R"], self.data, self.test)

    def close(self) -> None:
        self.stepper.close()


def train(
    data: Triples,
    cfg: KGEConfig,
    epochs: int = 10,
    devices: Devices | None = None,
    seed: int = 0,
    progress: bool = True,
    every: int = 1,
    eval_limit: int = 5_000,
    compile_options: Mapping[str, Any] | None = None,
) -> Trained:
    """Train for `epochs` passes over the training triples (see `Trainer`), measuring every
    `every` epochs and after the last."""
    t = Trainer(data, cfg, devices, seed, eval_limit, compile_options)
    return run_trainer(t, f"einrel {cfg.model} {data.name}", epochs, every, progress)
