"""Placers behind one interface, `placer(graph, ndev, seed) -> device per op`, and a registry.

The registry is a read-only mapping; options (a search budget, a number of random tries) are
bound with `get_placer(name, **options)` rather than by mutating anything shared.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import random
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from ..errors import CompileError
from .dag import PlaceGraph, check_ndev
from .listsched import critical_path, heft
from .search import anneal
from .simulate import make_simulator

Placer = Callable[[PlaceGraph, int, int], list[int]]


def round_robin(graph: PlaceGraph, ndev: int, seed: int = 0) -> list[int]:
    """Op i on device i mod ndev: the released-code baseline of PAPERS §4.11."""
    check_ndev(ndev)
    return [v % ndev for v in range(graph.num_ops)]


def random_best(graph: PlaceGraph, ndev: int, seed: int = 0, *, tries: int = 100) -> list[int]:
    """The best of `tries` uniform assignments under the simulator (first best on ties)."""
    check_ndev(ndev)
    if tries < 1:
        raise CompileError(f"random placer needs tries >= 1, got {tries}")
    rng = random.Random(seed)
    sim = make_simulator(graph)
    best: list[int] = []
    best_span = float("inf")
    for _ in range(tries):
        a = [rng.randrange(ndev) for _ in range(graph.num_ops)]
        span = sim(a)
        if span < best_span:
            best, best_span = a, span
    return best


def critical_path_placer(graph: PlaceGraph, ndev: int, seed: int = 0) -> list[int]:
    """Doppler's CP list scheduling with deterministic tie-breaks (the seed is not used)."""
    return critical_path(graph, ndev)


def heft_placer(graph: PlaceGraph, ndev: int, seed: int = 0) -> list[int]:
    """HEFT with insertion; deterministic (the seed is not used)."""
    return heft(graph, ndev)


def search_placer(
    graph: PlaceGraph,
    ndev: int,
    seed: int = 0,
    *,
    budget_s: float = 10.0,
    max_evals: int | None = None,
    start: Sequence[int] | None = None,
) -> list[int]:
    """Simulated annealing under the simulator; see `search.anneal`."""
    check_ndev(ndev)
    return anneal(graph, ndev, seed, budget_s=budget_s, max_evals=max_evals, start=start).assignment


PLACERS: Mapping[str, Placer] = MappingProxyType(
    {
        "round-robin": round_robin,
        "random": random_best,
        "critical-path": critical_path_placer,
        "heft": heft_placer,
        "search": search_placer,
    }
)

# Placers that live in optional subpackages: name -> module exposing `place(graph, ndev, seed)`.
OPTIONAL_PLACERS: Mapping[str, str] = MappingProxyType(
    {"doppler": "einrel.place.doppler", "doppler+search": "einrel.place.doppler.search"}
)


def _optional(name: str) -> Placer | None:
    module_name = OPTIONAL_PLACERS.get(name)
    if module_name is None:
        return None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is None or not (module_name + ".").startswith(err.name + "."):
            raise  # the subpackage exists but is broken: say so rather than hide it
        return None
    placer = getattr(module, "place", None)
    return placer if callable(placer) else None


def get_placer(name: str, **options: Any) -> Placer:
    """The placer called `name`, with keyword `options` bound (e.g. budget_s for 'search')."""
    placer = PLACERS.get(name) or _optional(name)
    if placer is None:
        valid = ", ".join([*PLACERS, *(f"{k} (when installed)" for k in OPTIONAL_PLACERS)])
        raise CompileError(f"unknown placer {name!r}; valid placers: {valid}")
    if not options:
        return placer
    params = inspect.signature(placer).parameters
    unknown = sorted(k for k in options if k not in params or k in ("graph", "ndev", "seed"))
    if unknown:
        allowed = [k for k in params if k not in ("graph", "ndev", "seed")]
        raise CompileError(f"placer {name!r} takes no option {unknown}; options: {allowed}")
    return functools.partial(placer, **options)
