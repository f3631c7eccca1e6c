"""Simulator-guided local search (simulated annealing) over assignments.

The simulator is the objective, so whatever the search finds is a real improvement under its
semantics. Moves aim at the critical chain of the current schedule (the ops whose finishes start
one another up to the makespan): pulling a consumer onto its producer's device removes a
transfer, moving a queued op elsewhere removes a wait, and moving a chain segment or a connected
region (a producer with its consumers, a whole branch) onto one device moves work without adding
transfers, which single-op moves cannot do when shipping costs more than computing (comm = 4·comp
in the released graphs). Random single moves and swaps keep the walk from stalling.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import CompileError
from .dag import PlaceGraph, check_ndev
from .listsched import critical_path, heft
from .simulate import check_assignment, make_simulator, simulate


@dataclass(frozen=True)
class SearchResult:
    """The best assignment found, its makespan and how much work it took."""

    assignment: list[int]
    makespan: float
    start_makespan: float
    evaluations: int
    seconds: float


def anneal(
    graph: PlaceGraph,
    ndev: int,
    seed: int = 0,
    *,
    budget_s: float = 10.0,
    max_evals: int | None = None,
    start: Sequence[int] | None = None,
    temperature: float = 0.02,
    refresh: int = 8,
) -> SearchResult:
    """Anneal from `start` (default: the better of critical path and HEFT) for `budget_s` seconds
    or `max_evals` simulator calls, whichever ends first; returns the best assignment seen.

    `temperature` is the initial temperature as a fraction of the starting makespan; it decays
    geometrically to 1/1000 of that over the run; after 20·n evaluations without a new best the
    walk restarts from the best assignment. The critical chain is recomputed at most every
    `refresh` evaluations: a slightly stale chain steers moves as well and costs a fifth less.
    With `max_evals` the temperature follows evaluations, not time, so with an ample `budget_s`
    the result depends only on the seed.
    """
    check_ndev(ndev)
    if budget_s <= 0 and max_evals is None:
        raise CompileError("search needs a positive budget_s or a max_evals")
    t0 = time.perf_counter()
    rng = random.Random(seed)
    sim = make_simulator(graph)
    n = graph.num_ops
    if start is not None:
        current = list(check_assignment(graph, start, ndev))
    else:
        candidates = [critical_path(graph, ndev), heft(graph, ndev)]
        current = min(candidates, key=sim)
    cur = sim(current)
    best, best_a = cur, current.copy()
    first = cur
    evals = 1
    if n == 0 or ndev == 1:
        return SearchResult(best_a, best, first, evals, time.perf_counter() - t0)
    t_hi = max(temperature * cur, 1e-300)
    t_lo = t_hi * 1e-3
    chain: list[int] = []
    chain_at = -refresh  # evaluation count when the chain was last computed
    stale = True
    preds, succs = graph.preds, graph.succs
    limit = max_evals if max_evals is not None else math.inf
    deadline = t0 + budget_s if budget_s > 0 else math.inf
    since_best = 0
    elapsed = 0.0
    while evals < limit:
        if evals % 64 == 0:
            elapsed = time.perf_counter() - t0
            if t0 + elapsed >= deadline:
                break
        frac = evals / limit if max_evals is not None else elapsed / budget_s
        temp = t_hi * (t_lo / t_hi) ** min(frac, 1.0)
        if stale and evals - chain_at >= refresh:
            chain = simulate(graph, current).critical_chain()
            chain_at, stale = evals, False
        changed = _propose(rng, current, chain, preds, succs, ndev)
        if not changed:
            continue
        new = sim(current)
        evals += 1
        delta = new - cur
        if delta <= 0 or rng.random() < math.exp(-delta / temp):
            if new != cur:
                stale = True
            cur = new
            if new < best:
                best, best_a = new, current.copy()
                since_best = 0
                continue
        else:
            for v, d in changed:
                current[v] = d
        since_best += 1
        if since_best > 20 * n:
            current = best_a.copy()
            cur = best
            stale = True
            since_best = 0
    return SearchResult(best_a, best, first, evals, time.perf_counter() - t0)


def _propose(
    rng: random.Random,
    a: list[int],
    chain: list[int],
    preds: tuple[tuple[int, ...], ...],
    succs: tuple[tuple[int, ...], ...],
    ndev: int,
) -> list[tuple[int, int]]:
    """Apply one random move to `a` in place; return (op, old device) pairs to undo it."""
    n = len(a)
    r = rng.random()
    if r < 0.3:  # co-locate a chain op with a neighbour
        v = chain[rng.randrange(len(chain))]
        nbrs = preds[v] + succs[v]
        if not nbrs:
            return _reassign(rng, a, v, ndev)
        d = a[nbrs[rng.randrange(len(nbrs))]]
        return _set(a, [v], d)
    if r < 0.45:  # move a chain op anywhere
        return _reassign(rng, a, chain[rng.randrange(len(chain))], ndev)
    if r < 0.55:  # a chain segment onto one device
        i = rng.randrange(len(chain))
        j = min(len(chain), i + 2 + rng.randrange(6))
        return _set(a, chain[i:j], rng.randrange(ndev))
    if r < 0.75:  # a connected region around an op onto one device
        v = chain[rng.randrange(len(chain))] if r < 0.65 else rng.randrange(n)
        region = _region(rng, v, 2 + rng.randrange(8), preds, succs)
        return _set(a, region, rng.randrange(ndev))
    if r < 0.87:  # any op anywhere
        return _reassign(rng, a, rng.randrange(n), ndev)
    u, v = rng.randrange(n), rng.randrange(n)  # swap
    if a[u] == a[v]:
        return []
    old = [(u, a[u]), (v, a[v])]
    a[u], a[v] = a[v], a[u]
    return old


def _region(
    rng: random.Random,
    v: int,
    size: int,
    preds: tuple[tuple[int, ...], ...],
    succs: tuple[tuple[int, ...], ...],
) -> list[int]:
    """Up to `size` ops reached from v by a breadth-first walk over edges in both directions,
    neighbours visited in random order."""
    region, seen, i = [v], {v}, 0
    while i < len(region) and len(region) < size:
        nbrs = list(preds[region[i]] + succs[region[i]])
        rng.shuffle(nbrs)
        for u in nbrs:
            if u not in seen and len(region) < size:
                seen.add(u)
                region.append(u)
        i += 1
    return region


def _reassign(rng: random.Random, a: list[int], v: int, ndev: int) -> list[tuple[int, int]]:
    d = rng.randrange(ndev - 1)
    return _set(a, [v], d + (d >= a[v]))


def _set(a: list[int], ops: list[int], d: int) -> list[tuple[int, int]]:
    old = [(v, a[v]) for v in ops if a[v] != d]
    for v, _ in old:
        a[v] = d
    return old
