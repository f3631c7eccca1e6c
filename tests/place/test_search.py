"""The annealing placer: never worse than its start, reproducible for a fixed evaluation budget,
and well below critical path on the released graphs."""

from __future__ import annotations

import time

import pytest

from einrel.errors import CompileError
from einrel.place import load_graph_file
from einrel.place.graphfile import RELEASED_DIR
from einrel.place.listsched import critical_path
from einrel.place.placers import Search
from einrel.place.search import anneal
from einrel.place.simulate import make_simulator

DATA = RELEASED_DIR  # Doppler's released graphs, shipped inside the package


@pytest.mark.parametrize(
    ("stem", "evals"),
    [("chain_mm_112nodes", 2000), ("ffnn_192nodes", 3000), ("transformer_block_215nodes", 2000)],
)
def test_search_beats_critical_path_by_a_fifth(stem: str, evals: int) -> None:
    g = load_graph_file(DATA / f"{stem}.txt")
    sim = make_simulator(g)
    r = anneal(g, 4, seed=0, budget_s=60.0, max_evals=evals)
    assert r.makespan == sim(r.assignment)
    assert r.makespan <= 0.8 * sim(critical_path(g, 4))
    assert r.makespan <= r.start_makespan


def test_search_from_a_given_start_never_gets_worse_and_is_reproducible() -> None:
    g = load_graph_file(DATA / "ffnn_192nodes.txt")
    sim = make_simulator(g)
    start = [v % 4 for v in range(g.num_ops)]
    a = Search(budget_s=60.0, max_evals=300, start=start)(g, 4, 7)
    b = Search(budget_s=60.0, max_evals=300, start=start)(g, 4, 7)
    assert a == b
    assert sim(a) <= sim(start)
    r = anneal(g, 4, seed=7, budget_s=60.0, max_evals=300, start=start)
    assert r.start_makespan == sim(start)
    assert r.evaluations <= 300


def test_search_respects_its_wall_time_budget() -> None:
    g = load_graph_file(DATA / "8gpu_full_transformer.txt")
    t = time.perf_counter()
    r = anneal(g, 8, seed=0, budget_s=0.5)
    assert time.perf_counter() - t < 5.0  # the budget is honoured (generous for loaded CI)
    assert r.evaluations > 10


def test_search_rejects_bad_arguments() -> None:
    g = load_graph_file(DATA / "chain_mm_112nodes.txt")
    with pytest.raises(CompileError, match="budget"):
        anneal(g, 4, budget_s=0)
    with pytest.raises(CompileError, match="76 ops"):
        anneal(g, 4, max_evals=10, start=[0, 1])
    with pytest.raises(CompileError, match=r"expected 0\.\.3"):
        anneal(g, 4, max_evals=10, start=[5] * g.num_ops)


def test_regions_are_connected_and_bounded() -> None:
    import random

    from einrel.place.search import _region

    g = load_graph_file(DATA / "ffnn_192nodes.txt")
    rng = random.Random(0)
    for v in (0, 64, 100, 179):
        for size in (1, 4, 9):
            region = _region(rng, v, size, g.preds, g.succs)
            assert region[0] == v and len(set(region)) == len(region) <= size
            for u in region[1:]:  # each op joins through an edge to an earlier one
                assert set(g.preds[u] + g.succs[u]) & set(region[: region.index(u)])
    # a source with its 3 successors in line: 4 ops reach the second big op of the branch
    assert _region(rng, 0, 4, g.preds, g.succs) == [0, 16, 32, 48]
