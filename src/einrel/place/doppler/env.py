"""One Doppler episode (the Doppler paper): |V| steps, each SEL picks a legal op, PLC a device.

Legal = every predecessor already placed. After PLC's choice the op gets list-scheduling
estimates in SEL order: it starts at its EST on the chosen device (the released environment
records the device's cumulative compute instead; the paper calls that a quirk, it is not kept)
and the device is busy until it ends.

Device features of op v on device d (6): Σ comp already on d; Σ comp of v's predecessors on d;
the earliest start and the latest end of those predecessors; EST(v, d); and, beyond the paper's
five, the co-parent affinity: Σ comm_u over the ops u already on d that feed one of v's consumers
(what a consumer of v would have to receive from d if v went elsewhere; it lets PLC see that
siblings which meet in one op are best kept together). The three times are taken
relative to min_d EST(v, d) (the earliest v can start anywhere), so they describe the choice at
hand rather than how far the episode has got; a device holding no predecessor gets 0 for both
predecessor times. Scaling, so that the features do not depend on the graph's cost units and a
difference of one typical op is visible to the network: the load is divided by the load bound
Σcomp/ndev; the other five are x ↦ asinh(x / mean comp) (linear near 0, logarithmic for the
long transfers of big blocks). EST(v, d) = max(d's free time, max over predecessors u of end(u),
plus comm_u when u is on another device).

An episode records what the loss needs: the SEL order, the chosen devices, the step at which each
op became legal and the device features of every step. The legal sets and the CP* sets (legal ops
of largest b-level; devices of smallest EST, i.e. feature 5 == 0) are rebuilt from that in bulk.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from .features import DEVICE_FEATURES, GraphFeatures
from .model import PlcNumpy


@dataclass(frozen=True)
class Episode:
    order: np.ndarray  # (T,) op chosen at step t
    devices: np.ndarray  # (T,) device chosen at step t
    enter: np.ndarray  # (n,) step at which each op became legal
    dyn: np.ndarray  # (T, ndev, 6) float32 device features of each step
    assignment: list[int]  # device per op
    estimate: float  # list-scheduling makespan in SEL order (raw units)

    def legal_mask(self) -> np.ndarray:
        """(T, n): op v is legal at step t from `enter[v]` until it is chosen."""
        t = np.arange(len(self.order))[:, None]
        pick = np.empty_like(self.enter)
        pick[self.order] = np.arange(len(self.order))
        return (t >= self.enter[None, :]) & (t <= pick[None, :])

    def sel_star(self, legal: np.ndarray, blevel: np.ndarray) -> np.ndarray:
        """(T, n): the legal ops of largest b-level at each step (SEL*)."""
        b = np.where(legal, blevel[None, :], -np.inf)
        return legal & (b == b.max(axis=1, keepdims=True))

    def plc_star(self) -> np.ndarray:
        """(T, ndev): the devices of smallest EST at each step (PLC*)."""
        return self.dyn[:, :, 4] == 0


def rollout(
    gf: GraphFeatures,
    ndev: int,
    sel_scores: np.ndarray | None,
    plc: PlcNumpy | None,
    eps_sel: float,
    eps_plc: float,
    rng: random.Random,
    sample: bool = False,
) -> Episode:
    """Run one episode. With probability eps (or when the network is None) an action is uniform
    over the legal ops / devices, otherwise it is the network's argmax (ε-greedy),
    or, with `sample`, a draw from the network's softmax."""
    n = gf.num_ops
    comp, comm = gf.comp.tolist(), gf.comm.tolist()
    preds, succs = gf.graph.preds, gf.succs
    coparents = gf.coparents or ((),) * n
    total = float(gf.comp.sum())
    load_inv = ndev / total if total > 0 else 0.0
    inv = n / total if total > 0 else 0.0
    asinh = math.asinh
    inf = math.inf
    devs = range(ndev)
    remaining = list(gf.indegree)
    legal = [v for v in range(n) if not remaining[v]]
    enter = np.zeros(n, dtype=np.int64)
    device = [-1] * n
    start = [0.0] * n
    end = [0.0] * n
    free = [0.0] * ndev
    load = [0.0] * ndev
    order = np.empty(n, dtype=np.int64)
    chosen = np.empty(n, dtype=np.int64)
    dyn = np.zeros((n, ndev, DEVICE_FEATURES), dtype=np.float32)
    sums = np.zeros((ndev, plc.h.shape[1]), dtype=np.float32) if plc is not None else None
    scores = sel_scores.tolist() if sel_scores is not None else None
    for t in range(n):
        if scores is None or (eps_sel > 0 and rng.random() < eps_sel):
            v = legal[rng.randrange(len(legal))]
        elif sample and len(legal) > 1 and sel_scores is not None:
            v = legal[_draw(sel_scores[legal], rng)]
        else:
            v = max(legal, key=scores.__getitem__)
        legal.remove(v)
        est = free.copy()
        pred_comp = [0.0] * ndev
        first = [inf] * ndev
        last = [-inf] * ndev
        for u in preds[v]:
            du, e = device[u], end[u]
            a = e + comm[u]
            for d in devs:
                x = e if d == du else a
                if x > est[d]:
                    est[d] = x
            pred_comp[du] += comp[u]
            if start[u] < first[du]:
                first[du] = start[u]
            if e > last[du]:
                last[du] = e
        ref = min(est)
        near = [0.0] * ndev
        for u, w in coparents[v]:
            if device[u] >= 0:
                near[device[u]] += w
        f = np.array(
            [
                (
                    load[d] * load_inv,
                    asinh(pred_comp[d] * inv),
                    asinh((first[d] - ref) * inv) if first[d] < inf else 0.0,
                    asinh((last[d] - ref) * inv) if first[d] < inf else 0.0,
                    asinh((est[d] - ref) * inv),
                    asinh(near[d] * inv),
                )
                for d in devs
            ],
            dtype=np.float32,
        )
        dyn[t] = f
        if plc is None or sums is None or (eps_plc > 0 and rng.random() < eps_plc):
            d = rng.randrange(ndev)
        elif sample:
            d = _draw(plc.logits(v, f, sums), rng)
        else:
            d = int(np.argmax(plc.logits(v, f, sums)))
        order[t] = v
        chosen[t] = d
        device[v] = d
        start[v] = est[d]
        end[v] = est[d] + comp[v]
        free[d] = end[v]
        load[d] += comp[v]
        if sums is not None and plc is not None:
            sums[d] += plc.h[v]
        for s in succs[v]:
            remaining[s] -= 1
            if not remaining[s]:
                legal.append(s)
                enter[s] = t + 1
    return Episode(order, chosen, enter, dyn, device, max(end, default=0.0))


def _draw(logits: np.ndarray, rng: random.Random) -> int:
    """An index drawn from softmax(logits)."""
    w = np.exp(logits - logits.max())
    c = np.cumsum(w)
    return min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), len(c) - 1)
