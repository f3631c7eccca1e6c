"""Candidate spaces (the EinDecomp paper) and the tree-cover DP against brute force."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import einrel as er
from einrel.decompose import eindecomp, plan_cost
from einrel.decompose.candidates import candidate_parts, count, factorisations, grids_for
from einrel.decompose.partition import Partition
from einrel.decompose.treedp import TreeSearch
from einrel.decompose.usage import partition_of, partition_shape
from einrel.frontend.tensor import build_graph
from einrel.ir.graph import Graph


def one_einsum(spec: str, *shapes: tuple[int, ...]) -> Graph:
    ins = [er.input(f"x{k}", s) for k, s in enumerate(shapes)]
    return build_graph([er.einsum(spec, *ins)])


def test_candidate_counts_match_the_paper_for_8_devices() -> None:
    assert count(3, 8, "all") == 10
    assert count(6, 8, "all") == 56
    assert count(3, 8, "all_range") == 46
    g = one_einsum("abef,cdef->abcd", (16,) * 4, (16,) * 4)
    assert len(candidate_parts(g, g.outputs[0], 8, "all")) == 56
    mm = one_einsum("ij,jk->ik", (64, 64), (64, 64))
    assert len(candidate_parts(mm, mm.outputs[0], 8, "all_range")) == 46
    assert len(candidate_parts(mm, mm.outputs[0], 8, "contraction")) == 10


def test_contraction_space_gives_other_nodes_every_divisor_as_slack() -> None:
    g = build_graph([er.relu(er.input("x", (16, 16, 16)))])
    # block counts 1, 2, 4, 8 over three dims: 1 + 3 + 6 + 10
    assert len(candidate_parts(g, g.outputs[0], 8, "contraction")) == 20
    assert len(candidate_parts(g, g.outputs[0], 8, "all")) == 10


def test_any_device_count_uses_exact_factorisations() -> None:
    assert len(factorisations(6, (64, 64, 64))) == 9  # 2 and 3 each go to one of 3 dims
    assert len(factorisations(12, (64, 64))) == 6  # the divisors of 12
    assert set(factorisations(6, (2, 64))) == {(1, 6), (2, 3)}
    assert factorisations(5, (4, 4)) == ()


def test_a_node_too_small_for_n_takes_the_largest_count_it_can() -> None:
    assert grids_for((2, 2), (8,)) == ((2, 2),)
    assert grids_for((3,), (8,)) == ((3,),)
    assert grids_for((), (8,)) == ((),)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 12), min_size=1, max_size=4),
    st.integers(1, 12),
    st.sampled_from(["all", "all_range", "contraction"]),
)
def test_every_candidate_fits_and_has_an_allowed_block_count(sizes, n, space) -> None:
    g = build_graph([er.relu(er.input("x", tuple(sizes)))])
    cands = candidate_parts(g, g.outputs[0], n, space)
    assert cands and len(set(cands)) == len(cands)
    for parts in cands:
        assert all(1 <= p <= s for p, s in zip(parts, sizes))
        Partition.even(sizes, parts)  # near-equal split exists
    counts = {math.prod(p) for p in cands}
    allowed = {"all": {n}, "all_range": {n, 2 * n, 4 * n}}.get(
        space, {d for d in range(1, n + 1) if n % d == 0}
    )
    assert counts <= allowed or len(counts) == 1  # a too-small node falls back to one count


# --- DP == brute force on trees -------------------------------------------------------------


def random_tree(rng: random.Random, nodes: int) -> Graph:
    """Einsum trees: every non-leaf node is read by at most one other node."""
    d = 8
    fresh = iter(range(100))

    def leaf():
        return er.input(f"w{next(fresh)}", (d, d))

    open_: list = [leaf()]
    for _ in range(nodes):
        kind = rng.choice(
            ["matmul", "matmul_w", "matmul_w", "add", "relu", "transpose", "square", "rowsum"]
        )
        x = open_.pop(rng.randrange(len(open_))) if open_ else leaf()
        if kind == "matmul":
            y = open_.pop(rng.randrange(len(open_))) if open_ else leaf()
            out = er.einsum("ij,jk->ik", x, y)
        elif kind == "matmul_w":
            out = er.einsum("ij,jk->ik", leaf(), x)
        elif kind == "add":
            y = open_.pop(rng.randrange(len(open_))) if open_ else leaf()
            out = er.einsum("ij,ij->ij", x, y, join=lambda a, b: a + b, agg=None)
        elif kind == "relu":
            out = er.relu(x)
        elif kind == "transpose":
            out = er.einsum("ij->ji", x)
        elif kind == "square":
            out = er.einsum("ij,ij->ij", x, x, agg=None)
        else:
            out = er.einsum("ij,j->ij", x, er.einsum("ij->j", leaf()), agg=None)
        open_.append(out)
    graph = build_graph(open_)
    assert all(len(graph.consumers(n.id)) <= 1 for n in graph.nodes if n.op != "input")
    return graph


def brute_force(graph: Graph, n: int, space: str) -> float:
    search = TreeSearch(graph, n, space, 1.0, True, {})
    nodes = search.nodes
    dec = {m.id: Partition.whole(partition_shape(m)) for m in graph.nodes}
    best = math.inf
    for combo in itertools.product(*(search.spaces[v].grids for v in nodes)):
        for v, grid in zip(nodes, combo):
            dec[v] = partition_of(grid)
        best = min(best, plan_cost(graph, dec))
    return best


@pytest.mark.parametrize("seed", range(12))
def test_dp_is_exact_on_small_trees(seed: int) -> None:
    rng = random.Random(seed)
    graph = random_tree(rng, rng.randint(3, 5))
    n, space = (4, "all") if seed % 3 else (2, "contraction")
    want = brute_force(graph, n, space)
    for order in ("forward", "reverse"):
        dec = eindecomp(graph, n, space=space, order=order, sweeps=0, seeds=(), small_join=0)
        assert plan_cost(graph, dec) == pytest.approx(want), order


def test_improvement_never_raises_the_cost_of_any_start() -> None:
    from einrel.workloads import get_workload

    graph = get_workload("llama_block", size="tiny", mode="train").graph()
    search = TreeSearch(graph, 4, "contraction", 1.0, True, {})
    for order in ("forward", "reverse"):
        start = search.first_pass(order)
        better = search.improve(start, 4)
        assert search.total(better) <= search.total(start)
    full = plan_cost(graph, eindecomp(graph, 4))
    plain = plan_cost(graph, eindecomp(graph, 4, seeds=(), sweeps=0))
    assert full <= plain


def test_search_total_is_the_plan_cost() -> None:
    from einrel.workloads import get_workload

    graph = get_workload("ffnn_train", size="tiny").graph()
    search = TreeSearch(graph, 4, "contraction", 1.0, True, {})
    choice = search.first_pass("reverse")
    dec = {m.id: Partition.whole(partition_shape(m)) for m in graph.nodes}
    for v, c in choice.items():
        dec[v] = partition_of(search.spaces[v].grids[c])
    assert search.total(choice) == pytest.approx(plan_cost(graph, dec))


def test_the_approximate_search_still_gives_a_valid_plan() -> None:
    from einrel.taskgraph.build import check_decomposition
    from einrel.workloads import get_workload

    graph = get_workload("llama_block", size="tiny").graph()
    dec = eindecomp(graph, 8, repartition="approx", space="all_range")
    check_decomposition(graph, dec)


def test_small_contractions_stay_whole_unless_told_to_split() -> None:
    x, w = er.input("x", (64, 32)), er.input("w", (32, 16))
    big_x, big_w = er.input("X", (512, 512)), er.input("W", (512, 512))
    graph = build_graph([er.einsum("ij,jk->ik", x, w), er.einsum("ij,jk->ik", big_x, big_w)])
    small, big = graph.outputs

    def blocks(dec: dict, v: int) -> int:
        return math.prod(d.parts for d in dec[v].dims)

    dec = eindecomp(graph, 2)  # 64·32 + 32·16 elements read: below SMALL_JOIN
    assert (blocks(dec, small), blocks(dec, big)) == (1, 2)
    dec = eindecomp(graph, 2, small_join=0)
    assert (blocks(dec, small), blocks(dec, big)) == (2, 2)
    with pytest.raises(er.CompileError, match="small_join"):
        eindecomp(graph, 2, small_join=-1)
