"""EinDecomp's modelled elements moved against the baselines on small workloads."""

from __future__ import annotations

import pytest

from einrel.decompose import get_partitioner, plan_cost
from einrel.decompose.candidates import candidate_parts
from einrel.ir.graph import Graph

BASELINES = ("data-parallel", "model-parallel", "largest-dim")
WORKLOADS = {
    "ffnn_train": {},
    "llama_block": {"batch": 8},
    "llama_train": {"batch": 8, "mode": "train"},
    "matmul_chain": {},
}


def graph_of(name: str) -> Graph:
    from einrel.workloads import get_workload

    kw = dict(WORKLOADS[name])
    return get_workload(name.replace("llama_train", "llama_block"), size="tiny", **kw).graph()


def in_space(graph: Graph, dec, n: int, space: str = "contraction") -> bool:
    """Whether every non-leaf node's partition is one of EinDecomp's candidates."""
    return all(
        dec[v.id].grid in candidate_parts(graph, v.id, n, space)
        for v in graph.nodes
        if v.op not in ("input", "fill")
    )


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_eindecomp_is_never_worse_than_a_baseline_inside_its_space(name: str) -> None:
    graph = graph_of(name)
    for n in (2, 4, 8):
        ours = plan_cost(graph, get_partitioner("eindecomp")(graph, n))
        for base in BASELINES:
            dec = get_partitioner(base)(graph, n)
            theirs = plan_cost(graph, dec)
            if in_space(graph, dec, n):
                assert ours <= theirs, (name, n, base, ours, theirs)


@pytest.mark.parametrize("name", ["ffnn_train", "llama_block", "llama_train"])
def test_eindecomp_beats_or_ties_every_baseline_on_models(name: str) -> None:
    graph = graph_of(name)
    for n in (2, 4, 8):
        ours = plan_cost(graph, get_partitioner("eindecomp")(graph, n))
        for base in BASELINES:
            theirs = plan_cost(graph, get_partitioner(base)(graph, n))
            assert ours <= theirs, (name, n, base, ours, theirs)


def test_the_matmul_chain_exception_is_a_serial_product() -> None:
    # Data parallelism leaves D·E, which has no batch label, in one block: cheaper in elements
    # moved, but not parallel, and outside the space, where every contraction has n blocks.
    graph = graph_of("matmul_chain")
    dp = get_partitioner("data-parallel")(graph, 8)
    serial = [v for v in graph.nodes if v.op == "einsum" and dp[v.id].nblocks == 1]
    assert [v.einsum.spec for v in serial] == ["ij,jk->ik"]
    assert not in_space(graph, dp, 8)
    ours = plan_cost(graph, get_partitioner("eindecomp")(graph, 8))
    for base in ("model-parallel", "largest-dim"):
        assert ours <= plan_cost(graph, get_partitioner(base)(graph, 8))
