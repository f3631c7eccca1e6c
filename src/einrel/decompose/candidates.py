"""The candidate partitions EinDecomp searches over (the EinDecomp paper), for any device count.

A candidate gives every dimension of a node's partition space a number of near-equal parts.
For a block count m the candidates are the ordered factorisations m = ∏_l p_l with
1 ≤ p_l ≤ size_l. With m = 2^k this is exactly the paper's set of exponent vectors summing to k,
so power-of-two counts reproduce its numbers; other device counts (6, 12, ...) work the same way.

Spaces pick the block counts per node (n = devices × slots):
- `contraction`: contractions get n blocks, every other node any divisor of n (slack);
- `all`: every node n blocks;
- `all_range`: every node n, 2n or 4n blocks.
A node too small for every count of its space falls back to the largest count it can take.
"""

from __future__ import annotations

import functools
import math

from ..errors import CompileError
from ..ir.graph import GNode, Graph
from .cost import join_cost

SPACES = ("contraction", "all", "all_range")

# In the `contraction` space a contraction whose whole join reads fewer elements than this may
# stay whole: each block task costs the engine about 0.15 to 0.25 ms to dispatch, run and book,
# more than such a join gains from a second worker. A KGE step at batch 256 (Kinships) made 113
# tasks on er.cpu(2) and took 17.4 ms, against 9.7 ms for its 34 on er.cpu(1); with its small
# contractions whole it makes 45 tasks and takes 8.6 ms on er.cpu(2).
SMALL_JOIN = 1 << 17


def divisors(n: int) -> tuple[int, ...]:
    return tuple(d for d in range(1, n + 1) if n % d == 0)


@functools.lru_cache(maxsize=1 << 14)
def factorisations(m: int, sizes: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Every ordered (p_0, ..., p_{R-1}) with ∏ p = m and 1 ≤ p_i ≤ sizes[i], earlier dims
    cut more first: a search that keeps the first of equally cheap candidates then cuts an
    einsum's output labels (which come first) before its aggregated ones, so a tie never
    buys partial sums."""
    if not sizes:
        return ((),) if m == 1 else ()
    head, rest = sizes[0], sizes[1:]
    room = math.prod(rest)
    out: list[tuple[int, ...]] = []
    for p in reversed(divisors(m)):
        if p <= head and m // p <= room:
            out.extend((p, *tail) for tail in factorisations(m // p, rest))
    return tuple(out)


def is_contraction(node: GNode) -> bool:
    """Two or more operands and at least one aggregated label: the nodes worth n blocks."""
    return node.op == "einsum" and node.einsum.arity >= 2 and bool(node.einsum.agg_labels)


def block_counts(node: GNode, n: int, space: str) -> tuple[int, ...]:
    if space == "contraction":
        return (n,) if is_contraction(node) else divisors(n)
    if space == "all":
        return (n,)
    if space == "all_range":
        return (n, 2 * n, 4 * n)
    raise CompileError(f"unknown candidate space {space!r}; expected one of {SPACES}")


@functools.lru_cache(maxsize=1 << 14)
def grids_for(sizes: tuple[int, ...], counts: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """All factorisations of the given block counts; if none fits, of the largest count that
    does (a whole node, one block, always fits)."""
    out = [g for m in counts for g in factorisations(m, sizes)]
    if out:
        return tuple(out)
    cap = min(max(counts), math.prod(sizes))
    for m in range(cap, 0, -1):
        found = factorisations(m, sizes)
        if found:
            return found
    return ((1,) * len(sizes),)  # pragma: no cover - m = 1 always fits


def candidate_parts(
    graph: Graph, v: int, n: int, space: str = "all_range", small_join: float = 0
) -> tuple[tuple[int, ...], ...]:
    """Parts per dimension of the partition space of node v, for n blocks in `space`; in the
    `contraction` space a contraction whose whole join reads fewer than `small_join` elements
    may take fewer blocks than n (down to one) like any other node."""
    node = graph[v]
    shape = node.einsum.join_shape if node.op == "einsum" else node.shape
    small = (
        space == "contraction"
        and small_join > 0
        and is_contraction(node)
        and join_cost(graph, v, (1,) * len(shape)) < small_join
    )
    if small:
        return grids_for(tuple(shape), divisors(n))
    return grids_for(tuple(shape), block_counts(node, n, space))


def count(rank: int, n: int, space: str, size: int = 1 << 20) -> int:
    """Candidates of a rank-R contraction whose dims are all `size` (to check a space)."""
    counts = {"all": (n,), "all_range": (n, 2 * n, 4 * n), "contraction": (n,)}[space]
    return sum(len(factorisations(m, (size,) * rank)) for m in counts)


def check_ndev(ndev: object) -> int:
    """A positive int device count, or a CompileError saying what was given."""
    if isinstance(ndev, bool) or not isinstance(ndev, int) or ndev < 1:
        raise CompileError(f"need a positive int number of devices, got {ndev!r}")
    return ndev
