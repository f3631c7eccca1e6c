"""Evaluating policies: greedy assignments, and side-by-side comparison of assignments under a
noisy (measured) cost, for choosing a device count and for rematching checkpoints."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from ...errors import CompileError
from ..simulate import make_simulator
from .features import GraphFeatures
from .model import GraphTensors
from .policy import DopplerPolicy
from .recipes import Oracle


def side_by_side(
    oracles: Sequence[Oracle], candidates: Sequence[Sequence[list[int]]], rounds: int
) -> list[float]:
    """The cost of each candidate (an assignment per graph) relative to candidate 0, as the
    median over `rounds` rounds in which every candidate is costed once, back to back, in an
    order that rotates each round; the mean over graphs. On a noisy machine the ratio of two
    neighbouring runs varies far less than either run alone: slow drifts cancel."""
    n = len(candidates)
    ratios: list[list[list[float]]] = [[[] for _ in oracles] for _ in range(n)]
    for r in range(rounds):
        for i, oracle in enumerate(oracles):
            costs = [0.0] * n
            for j in [(r + x) % n for x in range(n)]:
                costs[j] = float(oracle(candidates[j][i]))
            for j in range(n):
                ratios[j][i].append(costs[j] / costs[0] if costs[0] > 0 else 1.0)
    return [sum(statistics.median(x) for x in per) / len(per) for per in ratios]


def choose_active(
    policy: DopplerPolicy,
    gfs: Sequence[GraphFeatures],
    gts: Sequence[GraphTensors],
    oracles: Sequence[Oracle],
    rounds: int,
) -> dict[int, float]:
    """Set `policy.active` to the device count whose greedy assignments cost least side by side
    (all devices on a tie); returns each count's cost relative to all devices."""
    counts = [policy.ndev, *range(1, policy.ndev)]
    candidates = []
    for k in counts:
        policy.active = k
        candidates.append(greedy_assignments(policy, gfs, gts))
    ratios = dict(zip(counts, side_by_side(oracles, candidates, rounds)))
    policy.active = min(counts, key=ratios.__getitem__)
    return dict(sorted(ratios.items()))


def rematch(
    policy: DopplerPolicy,
    states: Sequence[dict[str, Any]],
    gfs: Sequence[GraphFeatures],
    gts: Sequence[GraphTensors],
    oracles: Sequence[Oracle],
    rounds: int,
) -> list[float]:
    """`side_by_side` of the greedy assignments of several weight states (leaves the last)."""
    candidates = []
    for state in states:
        policy.load_state(state)
        candidates.append(greedy_assignments(policy, gfs, gts))
    if all(c == candidates[0] for c in candidates):
        return [1.0] * len(candidates)
    return side_by_side(oracles, candidates, rounds)


def greedy_assignments(
    policy: DopplerPolicy, gfs: Sequence[GraphFeatures], gts: Sequence[GraphTensors]
) -> list[list[int]]:
    return [policy.decode(gf, tensors=gt).assignment for gf, gt in zip(gfs, gts)]


def per_graph_oracles(
    oracle: Oracle | Sequence[Oracle | None] | None, gfs: list[GraphFeatures]
) -> list[Oracle]:
    """One cost oracle per graph; None (or a None entry) is the simulator."""
    if oracle is None or callable(oracle):
        many: list[Oracle | None] = [oracle] * len(gfs)
    else:
        many = list(oracle)
        if len(many) != len(gfs):
            raise CompileError(f"{len(many)} oracles for {len(gfs)} graphs")
    return [o if o is not None else make_simulator(gf.graph) for o, gf in zip(many, gfs)]
