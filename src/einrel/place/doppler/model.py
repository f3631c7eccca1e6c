"""Doppler's networks in plain torch: a shared edge-conditioned MPNN encoder, the
SEL head (which legal op next) and the PLC head (which device for it).

Edge-conditioned message passing (Gilmer et al. 2017): the message to v is Σ over in-edges u→v
of h_u·W(e_uv), where an edge network maps the edge feature to a 128×128 matrix, followed by ReLU
and a GRU update, 6 rounds. The edge network here is 1 → 128 → ReLU → r → 128·128 with no
non-linearity after the rank-r layer, i.e. the usual 128 → 128·128 output layer factored through
rank r. That factoring makes the rounds cheap without building any per-edge matrix:

    m_v = Σ_j (Σ_{u→v} y_j(e) h_u) · A_j + (Σ_{u→v} h_u) · B,

where y(e) ∈ R^r is the bottleneck output and A_j, B the 128×128 slices of the output layer's
weight and bias: one index_add over the edges and one (n, (r+1)·128) × ((r+1)·128, 128) GEMM per
round, whatever the number of edges or distinct edge features. When the graph has few distinct
edge features (U ≤ 2(r+1); the released graphs have 2 to 11), the encoder instead builds the U
matrices W(value) and sums h_u per (destination, value) before one (n, U·128) GEMM: the same
function, with messages of 128 rather than (r+1)·128 numbers per edge. The encoder depends only
on the graph, so it runs once per episode for both heads; both heads are evaluated for every op
(SEL) or for every recorded step (PLC) in one batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .features import DEVICE_FEATURES, NODE_FEATURES, GraphFeatures

ZSCORE_EPS = 1e-8


@dataclass(frozen=True)
class NetConfig:
    hidden: int = 128
    rounds: int = 6
    edge_hidden: int = 128
    edge_rank: int = 8
    head_hidden: int = 64
    # PLC's device features: the first `device_features` of the rollout's (5: the paper's,
    # as the policies of einrel < 2 files were trained with; 6: with the co-parent affinity)
    device_features: int = DEVICE_FEATURES
    # random node features the encoder reads beside the five above (see `random_node_features`;
    # 0 in files written before them)
    node_noise: int = 8

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _init(module: nn.Module) -> None:
    """Orthogonal weights and zero biases everywhere (the Doppler paper)."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            nn.init.orthogonal_(p)
        elif "bias" in name:
            nn.init.zeros_(p)


class GraphTensors:
    """A graph's static features as torch tensors (built once per graph, shared by both nets)."""

    def __init__(self, gf: GraphFeatures) -> None:
        self.features = gf
        self.n = gf.num_ops
        self.x = torch.from_numpy(gf.x)
        self.src = torch.from_numpy(gf.src)
        self.dst = torch.from_numpy(gf.dst)
        self.edge_x = torch.from_numpy(gf.edge_x).unsqueeze(1)
        values, index = np.unique(gf.edge_x, return_inverse=True)
        self.values = torch.from_numpy(values.astype(np.float32)).unsqueeze(1)  # (U, 1)
        self.value_of_edge = torch.from_numpy(index.reshape(-1).astype(np.int64))
        self.b_path = torch.from_numpy(gf.b_path)
        self.t_path = torch.from_numpy(gf.t_path)
        self.noise = torch.from_numpy(random_node_features(gf.fingerprint, self.n))


MAX_NODE_NOISE = 16


def random_node_features(fingerprint: str, n: int) -> np.ndarray:
    """(n, MAX_NODE_NOISE) standard-normal features, fixed by the graph's fingerprint.

    Message passing gives structurally identical ops (the heads of an attention layer, the
    blocks of one matmul) identical embeddings, so neither head could tell them apart: SEL
    would score them alike and self-imitation could not replay a particular order or split
    among them. Random node features (Sato, Yamada and Kashima 2021) break that symmetry; tied
    to the fingerprint, they are the same for every run on the same graph.
    """
    rng = np.random.default_rng(int(fingerprint, 16) if fingerprint else 0)
    return rng.standard_normal((n, MAX_NODE_NOISE)).astype(np.float32)


class MPNN(nn.Module):
    """The shared encoder: (n, 5) node features -> (n, 128) embeddings."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        h, r = cfg.hidden, cfg.edge_rank
        if not 0 <= cfg.node_noise <= MAX_NODE_NOISE:
            raise ValueError(f"node_noise must be in 0..{MAX_NODE_NOISE}, got {cfg.node_noise}")
        self.cfg = cfg
        self.project = nn.Linear(NODE_FEATURES + cfg.node_noise, h)
        self.edge_in = nn.Linear(1, cfg.edge_hidden)
        self.edge_rank = nn.Linear(cfg.edge_hidden, r)
        self.edge_out = nn.Linear(r, h * h)
        self.conv_bias = nn.Parameter(torch.zeros(h))
        self.gru = nn.GRUCell(h, h)
        _init(self)

    def forward(self, g: GraphTensors, grouped: bool | None = None) -> torch.Tensor:
        """Embeddings (n, 128); `grouped` forces one of the two equivalent formulations."""
        h_dim, r = self.cfg.hidden, self.cfg.edge_rank
        k = self.cfg.node_noise
        h = F.relu(self.project(torch.cat([g.x, g.noise[:, :k]], dim=1) if k else g.x))
        if g.n == 0:
            return h
        if grouped if grouped is not None else len(g.values) <= 2 * (r + 1):
            # Few distinct edge features: one 128×128 matrix per value, messages summed per
            # (destination, value) first. Same function as below, less work.
            w = self.edge_out(self.edge_rank(F.relu(self.edge_in(g.values))))
            kernel = w.view(-1, h_dim)  # (U·128, 128): row block c is W(value c), (in, out)
            slots, width = g.dst * len(g.values) + g.value_of_edge, len(g.values)
            y = None
        else:
            y = self.edge_rank(F.relu(self.edge_in(g.edge_x)))  # (E, r)
            y = torch.cat([y, torch.ones_like(y[:, :1])], dim=1)  # (E, r + 1): the bias slice
            # kernel block j multiplies Σ_{u→v} y_j h_u; the last block is the output bias B.
            weight = self.edge_out.weight.view(h_dim, h_dim, r).permute(2, 0, 1)
            bias = self.edge_out.bias.view(1, h_dim, h_dim)
            kernel = torch.cat([weight, bias], dim=0).reshape((r + 1) * h_dim, h_dim)
            slots, width = g.dst, r + 1
        hidden = h
        for _ in range(self.cfg.rounds):
            if y is None:
                agg = h.new_zeros(g.n * width, h_dim).index_add_(0, slots, h[g.src])
            else:
                msgs = y.unsqueeze(2) * h[g.src].unsqueeze(1)  # (E, r + 1, 128)
                agg = h.new_zeros(g.n, width, h_dim).index_add_(0, slots, msgs)
            m = F.relu(agg.view(g.n, -1) @ kernel + self.conv_bias)
            hidden = self.gru(m, hidden)
            h = hidden
        return h


class SelNet(nn.Module):
    """Scores every op from its embedding; the policy is a softmax over the legal ops."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.x_lin = nn.Linear(NODE_FEATURES, cfg.hidden)
        self.l1 = nn.Linear(4 * cfg.hidden, cfg.head_hidden)
        self.l2 = nn.Linear(cfg.head_hidden, 1)
        _init(self)

    def forward(self, g: GraphTensors, h: torch.Tensor) -> torch.Tensor:
        z = torch.cat(
            [F.leaky_relu(self.x_lin(g.x)), h, g.b_path @ h, g.t_path @ h],
            dim=1,
        )
        return self.l2(F.leaky_relu(self.l1(z), 0.1)).squeeze(1)


class PlcNet(nn.Module):
    """Scores every device for the op SEL chose, from the device's dynamic state."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        h = cfg.hidden
        self.cfg = cfg
        self.dev_lin = nn.Linear(cfg.device_features, h)
        self.x_lin = nn.Linear(NODE_FEATURES, h)
        self.l1 = nn.Linear(4 * h, cfg.head_hidden)
        self.l2 = nn.Linear(cfg.head_hidden, 1)
        _init(self)

    def _blocks(self) -> tuple[torch.Tensor, ...]:
        h = self.cfg.hidden
        w = self.l1.weight
        return w[:, :h], w[:, h : 2 * h], w[:, 2 * h : 3 * h], w[:, 3 * h :]

    def static(self, g: GraphTensors, h: torch.Tensor) -> torch.Tensor:
        """Each op's device-independent share of the first layer (n, 64)."""
        _, w_x, w_h, _ = self._blocks()
        return self.x_lin(g.x) @ w_x.T + h @ w_h.T + self.l1.bias

    def forward(
        self,
        h: torch.Tensor,
        c: torch.Tensor,
        ops: torch.Tensor,
        dyn: torch.Tensor,
        devices: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (T, ndev) for T recorded steps: op `ops[t]` was placed on `devices[t]` with the
        device features `dyn[t]` (T, ndev, 6); the per-device embedding sums are prefix sums."""
        w_d, _, _, w_s = self._blocks()
        ndev = dyn.shape[1]
        onehot = F.one_hot(devices, ndev).to(h.dtype)  # (T, ndev)
        contrib = onehot.unsqueeze(2) * h[ops].unsqueeze(1)  # (T, ndev, 128)
        sums = torch.cumsum(contrib, dim=0) - contrib  # what was on each device before step t
        pre = (
            F.leaky_relu(self.dev_lin(dyn[..., : self.cfg.device_features])) @ w_d.T
            + zscore_devices(sums) @ w_s.T
            + c[ops].unsqueeze(1)
        )
        return self.l2(F.leaky_relu(pre, 0.1)).squeeze(2)


def zscore_devices(s: torch.Tensor) -> torch.Tensor:
    """z-score over the device axis (-2), per embedding column; constant columns become 0.
    (The epsilon sits inside the root: a zero variance must not give an infinite gradient.)"""
    d = s - s.mean(dim=-2, keepdim=True)
    return d / ((d * d).mean(dim=-2, keepdim=True) + ZSCORE_EPS).sqrt()


class PlcNumpy:
    """PLC's per-step head in numpy for rollouts (no autograd, small matrices, low overhead)."""

    def __init__(self, net: PlcNet, h: torch.Tensor, c: torch.Tensor) -> None:
        w_d, _, _, w_s = (w.detach().numpy() for w in net._blocks())
        self.dev_w = net.dev_lin.weight.detach().numpy().T.copy()  # (device features, 128)
        self.dev_b = net.dev_lin.bias.detach().numpy().copy()
        self.k = net.cfg.device_features
        self.w = np.concatenate([w_d.T, w_s.T], axis=0)  # (256, 64)
        self.l2_w = net.l2.weight.detach().numpy()[0].copy()  # (64,); the bias moves no argmax
        self.h = h.detach().numpy()
        self.c = c.detach().numpy()

    def logits(self, v: int, dyn: np.ndarray, sums: np.ndarray) -> np.ndarray:
        """Scores (ndev,) for op v with device features `dyn` (ndev, 6) and embedding sums."""
        a = dyn[:, : self.k] @ self.dev_w
        a += self.dev_b
        np.maximum(a, 0.01 * a, out=a)
        k = 1.0 / len(sums)
        d = sums - sums.sum(axis=0) * k
        d /= np.sqrt((d * d).sum(axis=0) * k + ZSCORE_EPS)
        pre = np.concatenate([a, d], axis=1) @ self.w
        pre += self.c[v]
        np.maximum(pre, 0.1 * pre, out=pre)
        return pre @ self.l2_w
