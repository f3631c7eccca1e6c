"""EinDecomp's greedy location assignment and round-robin on einrel task graphs."""

from __future__ import annotations

import numpy as np
import pytest

import einrel as er
from einrel.decompose import Partition, get_partitioner
from einrel.errors import CompileError
from einrel.frontend.reference import evaluate
from einrel.frontend.tensor import build_graph
from einrel.place.locate import eindecomp_greedy, plans
from einrel.taskgraph.build import build_tasks
from einrel.taskgraph.interpret import interpret_tasks
from einrel.taskgraph.place import place_tasks
from helpers import round_robin


def test_aggregation_plans_are_the_papers_for_4_partials_on_4_devices() -> None:
    spreads = [devs for devs, _ in plans(4, 4)]
    assert spreads == [
        (0, 0, 0, 0),
        (1, 1, 1, 1),
        (2, 2, 2, 2),
        (3, 3, 3, 3),
        (0, 1, 0, 1),
        (2, 3, 2, 3),
        (0, 1, 2, 3),
    ]
    assert dict(plans(4, 4))[(2, 3, 2, 3)] == (2, 3)  # sites: inside the plan's range
    assert [d for d, _ in plans(1, 3)] == [(0,), (1,), (2,)]


def matmul(split: tuple[int, int, int]):
    """64x64 @ 64x64 with the join space (i, k, j) cut as given; float64."""
    a = er.input("a", (64, 64), "float64")
    b = er.input("b", (64, 64), "float64")
    graph = build_graph([er.einsum("ij,jk->ik", a, b)])
    dec = {0: Partition.whole((64, 64)), 1: Partition.whole((64, 64))}
    dec[2] = Partition.even((64, 64, 64), split)
    rng = np.random.default_rng(0)
    feeds = {"a": rng.standard_normal((64, 64)), "b": rng.standard_normal((64, 64))}
    return graph, build_tasks(graph, dec), feeds


def applies(tg, devices):
    return [devices[t.id] for t in tg.tasks if t.kind == "apply"]


def test_without_a_communication_penalty_blocks_are_balanced() -> None:
    _, tg, _ = matmul((4, 2, 1))
    devices = eindecomp_greedy(tg, 4, flops_per_byte_moved=0.0)
    assert sorted(applies(tg, devices)) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_partials_spread_when_flops_dominate_and_stay_together_when_bytes_do() -> None:
    _, tg, feeds = matmul((1, 1, 4))  # one output block, four partial sums
    spread = eindecomp_greedy(tg, 4, flops_per_byte_moved=0.01)
    assert sorted(applies(tg, spread)) == [0, 1, 2, 3]
    packed = eindecomp_greedy(tg, 4, flops_per_byte_moved=1e6)
    assert len(set(applies(tg, packed))) == 1
    ref = feeds["a"] @ feeds["b"]
    for devices in (spread, packed):
        placed = place_tasks(tg, devices, 4)
        np.testing.assert_allclose(interpret_tasks(placed, feeds)[0], ref, rtol=1e-12)
    moved = [place_tasks(tg, d, 4).stats()["bytes_moved"] for d in (packed, spread)]
    assert moved[0] == 0 < moved[1]


def test_round_robin_deals_each_nodes_blocks_in_turn() -> None:
    _, tg, _ = matmul((2, 3, 1))
    devices = round_robin(tg, 4)
    assert applies(tg, devices) == [0, 1, 2, 3, 0, 1]
    for t, d in zip(tg.tasks, devices):  # leaves live wherever they are needed
        assert d == -1 if t.kind in ("input", "fill") else 0 <= d < 4


def test_greedy_moves_less_than_round_robin_on_a_training_step() -> None:
    from einrel.workloads import get_workload

    wl = get_workload("llama_block", size="tiny", dtype="float64", mode="train")
    graph = wl.graph()
    dec = get_partitioner("eindecomp", small_join=0)(graph, 4)  # split even what is small
    tg = build_tasks(graph, dec)
    feeds = wl.make_feeds(0)
    want = evaluate(wl.outputs, feeds)
    moved = {}
    for name, devices in (
        ("greedy", eindecomp_greedy(tg, 4, flops_per_byte_moved=1.0)),
        ("round-robin", round_robin(tg, 4)),
    ):
        placed = place_tasks(tg, devices, 4)
        moved[name] = placed.stats()["bytes_moved"]
        for a, b in zip(interpret_tasks(placed, feeds), want):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        assert len({t.device for t in placed.tasks if t.kind == "apply"}) > 1, name
    assert moved["greedy"] < moved["round-robin"]


@pytest.mark.parametrize("locate", [eindecomp_greedy, round_robin])
def test_bad_inputs(locate) -> None:
    _, tg, _ = matmul((2, 1, 1))
    for ndev in (0, -1, 1.5, "2"):
        with pytest.raises(CompileError, match="devices"):
            locate(tg, ndev)
    placed = place_tasks(tg, [0] * len(tg), 1)
    with pytest.raises(CompileError, match="already placed"):
        locate(placed, 2)


def test_negative_penalty_is_refused() -> None:
    _, tg, _ = matmul((2, 1, 1))
    with pytest.raises(CompileError, match="flops_per_byte_moved"):
        eindecomp_greedy(tg, 2, flops_per_byte_moved=-1.0)
