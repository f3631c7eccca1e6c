"""The "doppler+search" placer: Doppler's greedy assignment as the start of simulated annealing."""

from __future__ import annotations

from pathlib import Path

from ..dag import PlaceGraph, check_ndev
from ..search import anneal
from .placer import place as doppler_place
from .policy import DopplerPolicy


def place(
    graph: PlaceGraph,
    ndev: int,
    seed: int = 0,
    *,
    policy: str | Path | DopplerPolicy | None = None,
    budget_s: float = 10.0,
    max_evals: int | None = None,
) -> list[int]:
    """Anneal (see `einrel.place.search.anneal`) from the doppler placer's assignment."""
    check_ndev(ndev)
    start = doppler_place(graph, ndev, seed, policy=policy)
    return anneal(graph, ndev, seed, budget_s=budget_s, max_evals=max_evals, start=start).assignment
