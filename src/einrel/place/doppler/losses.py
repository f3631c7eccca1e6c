"""The losses of one recorded episode: policy gradient, imitation of the critical-path
heuristic and entropy, for SEL and PLC at every step at once (the Doppler paper)."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch.nn import functional as F

from ..dag import PlaceGraph
from .env import Episode, rollout
from .features import graph_features
from .model import GraphTensors
from .policy import DopplerPolicy, one_thread
from .recipes import GAMMA, STAGES, Stage


def episode_losses(
    policy: DopplerPolicy,
    gt: GraphTensors,
    scores: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    ep: Episode,
    st: Stage,
    returns: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(SEL loss, PLC loss, IL loss per step) of one recorded episode, every step in one batch."""
    gf = gt.features
    steps = len(ep.order)
    legal_np = ep.legal_mask()
    legal = torch.from_numpy(legal_np)
    order = torch.from_numpy(ep.order)
    devs = torch.from_numpy(ep.devices)
    rows = torch.arange(steps)

    logits = scores.unsqueeze(0).expand(steps, -1).masked_fill(~legal, -math.inf)
    # zero (not -inf) outside the legal set, so no 0 · inf reaches a gradient
    logp_sel = F.log_softmax(logits, dim=1).masked_fill(~legal, 0.0)
    plc_logits = policy.plc(h, c, order, torch.from_numpy(ep.dyn), devs)
    logp_plc = F.log_softmax(plc_logits, dim=1)

    sel_loss = scores.new_zeros(())
    plc_loss = scores.new_zeros(())
    il_value = 0.0
    if st.w_pg and returns is not None:
        sel_loss = sel_loss - st.w_pg * (logp_sel[rows, order] * returns).sum()
        plc_loss = plc_loss - st.w_pg * (logp_plc[rows, devs] * returns).sum()
    if st.w_il:
        star_sel = torch.from_numpy(ep.sel_star(legal_np, gf.blevel))
        star_plc = torch.from_numpy(ep.plc_star())
        il_sel = -torch.where(star_sel, logp_sel, 0.0).sum()
        il_plc = -torch.where(star_plc, logp_plc, 0.0).sum()
        sel_loss = sel_loss + st.w_il * il_sel
        plc_loss = plc_loss + st.w_il * il_plc
        il_value = float(il_sel.detach() + il_plc.detach()) / max(steps, 1)
    if st.w_ent:
        ent_sel = (legal * logp_sel.exp() * logp_sel).sum()
        ent_plc = (logp_plc.exp() * logp_plc).sum()
        sel_loss = sel_loss + st.w_ent * ent_sel
        plc_loss = plc_loss + st.w_ent * ent_plc
    return sel_loss, plc_loss, il_value


@one_thread
def il_loss(policy: DopplerPolicy, graph: PlaceGraph, episodes: int = 8, seed: int = 0) -> float:
    """The imitation loss per step, averaged over `episodes` fixed random rollouts (a yardstick)."""
    gf = graph_features(graph)
    gt = GraphTensors(gf)
    rng = random.Random(seed)
    st = STAGES[1]
    total = 0.0
    with torch.no_grad():
        scores, h, c = policy.forward(gt)
        for _ in range(episodes):
            ep = rollout(gf, policy.active, None, None, 1.0, 1.0, rng)
            total += episode_losses(policy, gt, scores, h, c, ep, st, None)[2]
    return total / episodes


def discounted(reward: float, steps: int, gamma: float = GAMMA) -> torch.Tensor:
    """R_t = γ^(T−1−t) · reward for a reward paid after the last of `steps` steps."""
    return torch.from_numpy((reward * gamma ** np.arange(steps - 1, -1, -1)).astype(np.float32))
