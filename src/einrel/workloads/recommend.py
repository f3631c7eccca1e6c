"""Collaborative filtering in einrel: matrix factorisation or LightGCN embeddings trained with
BPR, sampled softmax (SSM) or SimCE on implicit feedback.

A step reads a batch of B training pairs and K negatives per pair, sampled afresh every step,
as two relations whose first key `t` is the pair's place in the batch:

    Pos(t, u, i)        one tuple per pair: its user and item
    Neg(t, k, u, j)     K tuples per pair: the user and the k-th sampled item

so `s⁺[t] = einsum("tui,ud,id->t", Pos, P, Q)` scores the positives, `einsum("tkuj,ud,jd->tkuj",
Neg, P, Q)` the negatives on their tuples, and an aggregation over k (max, or a sum of
exponentials) brings them back to the pair. The losses per pair, averaged over the batch:

    BPR     log(1 + exp(s⁻ - s⁺))            (K = 1)
    SSM     log(exp(s⁺) + Σ_k exp(s⁻_k)) - s⁺
    SimCE   relu(margin - s⁺ + max_k s⁻_k)   (arXiv 2406.16170)

(every tuple of Pos and Neg has the value 1; a batch may be shorter than B).

LightGCN (`layers` > 0) replaces P and Q by the mean of their propagations over the symmetric
normalised user–item graph, a relation R(u, i) on the training pairs. The gradients of the
embedding tables are scatter-adds through the same relations; one compiled program serves
every step (the structure changes within `nnz`), with an `er.optim` update of P and Q.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import frontend as F
from ..devices import Devices
from ..errors import EinrelError
from ..frontend.autodiff import grad
from ..frontend.relation import coo, relation
from ..frontend.tensor import Tensor
from .interactions import Interactions
from .training import Stepper, Trained, make_optimizer, run_trainer
from .training import torch_grad as _grad

LOSSES = ("bpr", "ssm", "simce")


@dataclass(frozen=True)
class RecConfig:
    """What to train: the embedding width, batch, negatives, loss, encoder depth and rate."""

    dim: int = 64
    batch: int = 2048
    negatives: int = 64
    loss: str = "simce"
    margin: float = 5.0
    layers: int = 0  # LightGCN propagation layers; 0 is plain matrix factorisation
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise EinrelError(f"recommend: loss {self.loss!r} is not one of {LOSSES}")
        if self.loss == "bpr" and self.negatives != 1:
            raise EinrelError("recommend: BPR compares a positive with one negative (negatives=1)")
        if min(self.dim, self.batch, self.negatives) < 1 or self.layers < 0:
            raise EinrelError(f"recommend: sizes must be positive, got {self}")


@dataclass
class RecModel:
    config: RecConfig
    data: Interactions
    loss: Tensor
    update: Any
    users: Tensor  # the final user embeddings (LightGCN: propagated)
    items: Tensor
    params: list[Tensor] = field(repr=False)

    @property
    def train_outputs(self) -> list[Tensor]:
        return [self.loss, *self.update.outputs]


def _softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)) without overflow: max(x, 0) + log(1 + exp(-|x|))."""
    return F.maximum(x, 0.0) + F.log(1.0 + F.exp(-F.abs_(x)))


def build(data: Interactions, cfg: RecConfig) -> RecModel:
    """The training step's graph for `data` under `cfg` (see the module docstring)."""
    U, I, d, B, K = data.users, data.items, cfg.dim, cfg.batch, cfg.negatives
    P, Q = F.input("P", (U, d)), F.input("Q", (I, d))
    users, items = P, Q
    if cfg.layers:
        R = relation("R", keys={"u": U, "i": I}, nnz=data.train.shape[1])
        pl, ql, ps, qs = P, Q, P, Q
        for _ in range(cfg.layers):
            pl, ql = F.einsum("ui,id->ud", R, ql), F.einsum("ui,ud->id", R, pl)
            ps, qs = ps + pl, qs + ql
        users, items = ps * (1.0 / (cfg.layers + 1)), qs * (1.0 / (cfg.layers + 1))
    pos = relation("Pos", keys={"t": B, "u": U, "i": I}, nnz=B)
    neg = relation("Neg", keys={"t": B, "k": K, "u": U, "j": I}, nnz=B * K)
    sp = F.einsum("tui,ud,id->t", pos, users, items, name="positive")
    sn = F.einsum("tkuj,ud,jd->tkuj", neg, users, items, name="negatives")
    if cfg.loss == "bpr":
        per = _softplus(F.einsum("tkuj->t", sn) - sp)
    elif cfg.loss == "simce":
        hardest = F.einsum("tkuj->t", sn, agg="max")
        per = F.relu(hardest - sp + cfg.margin)
    else:  # ssm: a log-sum-exp over the positive and the negatives, shifted by their max
        top = F.maximum(sp, F.einsum("tkuj->t", sn, agg="max"))
        rest = F.einsum("tkuj,t->t", sn, top, join=lambda s, m: F.exp(s - m))
        per = top + F.log(F.exp(sp - top) + rest) - sp
    # over the pairs present: a batch shorter than B leaves places t without tuples
    present = F.einsum("tui->t", pos)
    loss = F.einsum("t,t->", per, present) / F.einsum("t->", present)
    params = [P, Q]
    opt = make_optimizer(cfg.optimizer, F.var("lr"), cfg.weight_decay)
    upd = opt.update(params, grad(loss, params))
    return RecModel(cfg, data, loss, upd, users, items, params)


def graph_feed(data: Interactions) -> Any:
    """R for LightGCN: the training pairs with 1 / sqrt(deg(u) deg(i))."""
    du = np.bincount(data.train[0], minlength=data.users).astype(np.float64)
    di = np.bincount(data.train[1], minlength=data.items).astype(np.float64)
    vals = 1.0 / np.sqrt(du[data.train[0]] * di[data.train[1]])
    return coo(data.train, vals.astype(np.float32), shape=(data.users, data.items))


def batch_feeds(
    pairs: np.ndarray, cfg: RecConfig, items: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Pos and Neg for a batch of training pairs: K items drawn uniformly per pair."""
    b, k = pairs.shape[1], cfg.negatives
    t = np.arange(b, dtype=np.int32)
    j = rng.integers(0, items, b * k, dtype=np.int32)
    neg = [np.repeat(t, k), np.tile(np.arange(k, dtype=np.int32), b), np.repeat(pairs[0], k), j]
    return {"Pos": coo(np.stack([t, pairs[0], pairs[1]])), "Neg": coo(np.stack(neg))}


def init_params(data: Interactions, dim: int, seed: int) -> dict[str, np.ndarray]:
    """Embeddings drawn from N(0, 0.1²), as LightGCN's reference code initialises them."""
    rng = np.random.default_rng(seed)
    return {
        "P": (0.1 * rng.standard_normal((data.users, dim))).astype(np.float32),
        "Q": (0.1 * rng.standard_normal((data.items, dim))).astype(np.float32),
    }


def steps_per_epoch(data: Interactions, cfg: RecConfig) -> int:
    return max(1, data.train.shape[1] // cfg.batch)  # the last partial batch is dropped


def evaluate(
    user_emb: np.ndarray, item_emb: np.ndarray, data: Interactions, users: np.ndarray, k: int = 20
) -> dict[str, float]:
    """Recall@k and NDCG@k for `users`, a few thousand rows of scores at a time."""
    from .interactions import ranking_metrics

    out: dict[str, list[float]] = {}
    chunk = max(1, (1 << 26) // max(1, data.items))
    weights = []
    for lo in range(0, users.size, chunk):
        rows = users[lo : lo + chunk]
        m = ranking_metrics(user_emb[rows] @ item_emb.T, rows, data, k)
        weights.append(rows.size)
        for key, v in m.items():
            out.setdefault(key, []).append(v)
    return {key: float(np.average(v, weights=weights)) for key, v in out.items()}


def eval_users(data: Interactions, limit: int, seed: int) -> np.ndarray:
    """Up to `limit` users with held-out items, drawn once (the same for every system)."""
    have = np.flatnonzero(np.bincount(data.test[0], minlength=data.users) > 0)
    if have.size <= limit:
        return have
    return np.sort(np.random.default_rng(seed).choice(have, limit, replace=False))


def torch_twin(
    d: Interactions, cfg: RecConfig, feeds: Mapping[str, Any], params: Mapping[str, np.ndarray]
) -> list:
    """The loss and the gradients of P and Q written in float64 torch from the definitions
    (the demo and the tests check the compiled step against it)."""
    import torch

    P = torch.tensor(params["P"], dtype=torch.float64, requires_grad=True)
    Q = torch.tensor(params["Q"], dtype=torch.float64, requires_grad=True)
    ue, ie = P, Q
    if cfg.layers:
        r = feeds["R"]
        R = torch.zeros((d.users, d.items), dtype=torch.float64)
        R[r.indices[0], r.indices[1]] = torch.from_numpy(r.values.astype(np.float64))
        pl, ql, ps, qs = P, Q, P, Q
        for _ in range(cfg.layers):
            pl, ql = R @ ql, R.T @ pl
            ps, qs = ps + pl, qs + ql
        ue, ie = ps / (cfg.layers + 1), qs / (cfg.layers + 1)
    pos, neg = feeds["Pos"].indices, feeds["Neg"].indices
    u, i = torch.from_numpy(pos[1].astype(np.int64)), torch.from_numpy(pos[2].astype(np.int64))
    j = torch.from_numpy(neg[3].astype(np.int64)).view(-1, cfg.negatives)
    loss = torch_loss(cfg, ue, ie, u, i, j)
    loss.backward()
    return [float(loss.detach()), _grad(P), _grad(Q)]


def torch_loss(cfg: RecConfig, ue: Any, ie: Any, u: Any, i: Any, j: Any) -> Any:
    """The batch loss in torch from user and item embeddings, the batch's users `u` and
    positive items `i` and its negatives `j` (batch × K): the definitions the torch twin and
    the benchmark's torch peer share."""
    import torch

    pu = ue[u]
    sp = (pu * ie[i]).sum(-1)
    sn = torch.einsum("bd,bkd->bk", pu, ie[j])
    if cfg.loss == "bpr":
        per = torch.nn.functional.softplus(sn[:, 0] - sp)
    elif cfg.loss == "simce":
        per = torch.relu(cfg.margin - sp + sn.max(1).values)
    else:
        per = torch.logsumexp(torch.cat([sp[:, None], sn], 1), 1) - sp
    return per.mean()


class Trainer:
    """One compiled training step (and, for LightGCN, one compiled propagation for the
    metrics) with its feeds: `step(pairs)` trains on a batch, `epoch()` on every pair in
    shuffled batches (negatives drawn afresh every step), `measure()` reports Recall@20 and
    NDCG@20 on the held-out items of up to `eval_limit` users."""

    def __init__(
        self,
        data: Interactions,
        cfg: RecConfig,
        devices: Devices | None = None,
        seed: int = 0,
        eval_limit: int = 10_000,
        compile_options: Mapping[str, Any] | None = None,
    ) -> None:
        from ..program import compile as compile_

        self.data, self.cfg = data, cfg
        self.model = model = build(data, cfg)
        params = {**init_params(data, cfg.dim, seed)}
        if cfg.layers:
            params["R"] = graph_feed(data)
        self.stepper = Stepper(
            model.train_outputs, model.update, params, cfg.lr, devices, compile_options
        )
        self.feeds = self.stepper.feeds
        opts = {"progress": False, **(compile_options or {})}
        outs = [model.users, model.items]
        self.embed = compile_(outs, devices=self.stepper.devices, **opts) if cfg.layers else None
        self.compile_s = self.stepper.compile_s
        self.rng = np.random.default_rng(seed + 1)
        self.users = eval_users(data, eval_limit, seed + 2)

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {k: self.feeds[k] for k in ("P", "Q")}

    def step(self, pairs: np.ndarray) -> float:
        return self.stepper.step(batch_feeds(pairs, self.cfg, self.data.items, self.rng))

    def epoch(self, e: int = 0) -> float:
        order = self.rng.permutation(self.data.train.shape[1])
        b = self.cfg.batch
        steps = steps_per_epoch(self.data, self.cfg)
        return float(
            np.mean(
                [self.step(self.data.train[:, order[k * b : (k + 1) * b]]) for k in range(steps)]
            )
        )

    def measure(self) -> dict[str, float]:
        if self.embed is not None:
            ue, ie = self.embed({k: self.feeds[k] for k in ("P", "Q", "R")})
        else:
            ue, ie = self.feeds["P"], self.feeds["Q"]
        return evaluate(ue, ie, self.data, self.users)

    def close(self) -> None:
        self.stepper.close()
        if self.embed is not None:
            self.embed.close()


def train(
    data: Interactions,
    cfg: RecConfig,
    epochs: int = 10,
    devices: Devices | None = None,
    seed: int = 0,
    progress: bool = True,
    every: int = 1,
    eval_limit: int = 10_000,
    compile_options: Mapping[str, Any] | None = None,
) -> Trained:
    """Train for `epochs` passes over the training pairs (see `Trainer`), measuring every
    `every` epochs and after the last."""
    t = Trainer(data, cfg, devices, seed, eval_limit, compile_options)
    title = f"einrel {'lightgcn' if cfg.layers else 'mf'} {cfg.loss} {data.name}"
    return run_trainer(t, title, epochs, every, progress)
