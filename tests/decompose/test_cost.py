"""The EinDecomp cost model on cases small enough to count by hand (the EinDecomp paper)."""

from __future__ import annotations

import pytest

import einrel as er
from einrel.decompose import Partition, node_costs, plan_cost
from einrel.decompose.cost import (
    STRIDED_ROW,
    agg_cost,
    join_cost,
    repartition_cost,
    repartition_cost_approx,
    strided_rows,
)
from einrel.decompose.partition import PartDim
from einrel.decompose.relations import dense_view
from einrel.frontend.tensor import build_graph

N = 16


def matmul_graph():
    a = er.input("a", (N, N))
    b = er.input("b", (N, N))
    return build_graph([er.einsum("ij,jk->ik", a, b)])


def _pd(*bounds: int) -> PartDim:
    return PartDim(tuple(bounds))


@pytest.mark.parametrize(
    ("pi", "pj", "pk", "expected"),
    [(4, 1, 1, 5), (1, 1, 4, 5), (1, 4, 1, 5), (2, 2, 1, 4), (2, 1, 2, 4), (1, 2, 2, 4)],
)
def test_matmul_node_local_terms_match_the_worked_example(pi, pj, pk, expected) -> None:
    g = matmul_graph()
    v = g.outputs[0]
    assert g[v].einsum.labels == "ikj"
    parts = (pi, pk, pj)
    # join = N²·p_k (a replicated over k) + N²·p_i (b replicated over i); agg = N²·(p_j − 1)
    assert join_cost(g, v, parts) == N * N * (pk + pi)
    assert agg_cost(g, v, parts) == N * N * (pj - 1)
    assert join_cost(g, v, parts) + agg_cost(g, v, parts) == expected * N * N


def test_input_discount_divides_only_the_leaf_operands() -> None:
    x = er.input("x", (8, 8))
    w = er.input("w", (8, 8))
    h = er.relu(x)
    g = build_graph([er.einsum("ij,jk->ik", h, w)])
    v = g.outputs[0]
    parts = (2, 2, 1)  # i, k, j
    full = join_cost(g, v, parts)
    assert full == 64 * 2 + 64 * 2
    # h is an einsum, w a graph input: only w's share is discounted
    assert join_cost(g, v, parts, input_discount=4.0) == 64 * 2 + 64 * 2 / 4


def test_identical_partitions_repartition_for_free() -> None:
    p = Partition.even((12, 10), (3, 2))
    assert repartition_cost(p, p) == 0.0
    assert repartition_cost_approx(p, p) == 0.0


def test_repartition_even_splits_exact_equals_approx() -> None:
    # 8 elements in 2 blocks of 4 -> 4 blocks of 2: each old block meets two new ones
    src = Partition.even((8,), (2,))
    dst = Partition.even((8,), (4,))
    assert repartition_cost(src, dst) == 4 * (4 + 2)
    assert repartition_cost_approx(src, dst) == (4 + 2) * 4
    # rows split -> columns split on 4x4: 4 pairs of 8-element blocks
    rows, cols = Partition.even((4, 4), (2, 1)), Partition.even((4, 4), (1, 2))
    assert repartition_cost(rows, cols) == 4 * (8 + 8)
    assert repartition_cost_approx(rows, cols) == (8 + 8) * 4


def test_repartition_uneven_exact_counts_pairs_and_skips_identical_blocks() -> None:
    # [0,4) [4,7) [7,10) -> [0,5) [5,10): pairs (4,5) (3,5) (3,5) (3,5)
    src = Partition((_pd(0, 4, 7, 10),))
    dst = Partition((_pd(0, 5, 10),))
    assert repartition_cost(src, dst) == (4 + 3 + 3 + 3) + 4 * 5
    assert repartition_cost_approx(src, dst) == (4 + 5) * 3
    # [0,5) stays, [5,10) -> [5,7) [7,10): the identical pair is free
    assert repartition_cost(Partition((_pd(0, 5, 10),)), Partition((_pd(0, 5, 7, 10),))) == (
        (5 + 2) + (5 + 3)
    )


def test_plan_cost_of_a_two_node_chain_by_hand() -> None:
    x = er.input("x", (8, 4))
    w = er.input("w", (4, 6))
    h = er.relu(x)  # einsum ab->ab
    y = er.einsum("ij,jk->ik", h, w)
    g = build_graph([y])
    hid, yid = g[1].id, g.outputs[0]
    assert g[hid].op == "einsum" and g[hid].einsum.labels == "ab"
    dec = {n.id: Partition.whole(n.shape) for n in g.nodes if n.op == "input"}
    dec[hid] = Partition.even((8, 4), (1, 2))  # h cut on columns
    dec[yid] = Partition.even((8, 6, 4), (2, 1, 1))  # y cut on rows i
    costs = node_costs(g, dec)
    # h: join 32 and the 8 strided rows of x's column blocks; repartition [1x2] -> [2x1] on
    # 8x4: 4 pairs of (16 + 16)
    strided = 8 * STRIDED_ROW
    assert (costs[hid].join, costs[hid].agg, costs[hid].repartition) == (32 + strided, 0, 4 * 32)
    # y: join |h| + |w|·2 = 32 + 48; no aggregation; graph output: no repartition
    assert (costs[yid].join, costs[yid].agg, costs[yid].repartition) == (80, 0, 0)
    assert plan_cost(g, dec) == 32 + strided + 128 + 80
    assert all(costs[n.id].total == 0 for n in g.nodes if n.op == "input")


def test_repartition_is_charged_once_against_the_refinement_of_all_readers() -> None:
    x = er.input("x", (8, 8))
    h = er.relu(x)
    a = er.einsum("ij->i", h)
    b = er.einsum("ij->j", h)
    g = build_graph([a, b])
    hid = g[1].id
    aid, bid = g.outputs
    dec = {0: Partition.whole((8, 8))}
    dec[hid] = Partition.even((8, 8), (2, 1))
    assert g[bid].einsum.labels == "ji"
    dec[aid] = Partition.even((8, 8), (2, 1))  # i=2: reads h rows-split
    dec[bid] = Partition.even((8, 8), (1, 2))  # j=1, i=2: reads h rows-split too
    assert node_costs(g, dec)[hid].repartition == 0
    dec[bid] = Partition.even((8, 8), (2, 1))  # j=2, i=1: reads h columns-split
    # refinement of [2x1] and [1x2] is [2x2]: each 32-block meets two 16-blocks
    assert node_costs(g, dec)[hid].repartition == 4 * (32 + 16)


def test_a_slice_reader_only_pays_for_its_window() -> None:
    x = er.input("x", (8,))
    h = er.relu(x)
    s = er.slice(h, (0,), (4,))
    g = build_graph([er.relu(s)])
    hid, sid = 1, 2
    assert g[sid].op == "slice"
    dec = {
        n.id: Partition.whole(n.shape if n.op != "einsum" else n.einsum.join_shape) for n in g.nodes
    }
    dec[hid] = Partition.even((8,), (2,))
    # the window [0,4) is exactly h's first block: nothing to cut or move
    assert node_costs(g, dec)[hid].repartition == 0
    dec[hid] = Partition.even((8,), (4,))
    # window [0,4) from blocks [0,2) [2,4): two pairs of (2 + 4)
    assert node_costs(g, dec)[hid].repartition == 2 * (2 + 4)


def test_fused_kernels_pay_for_the_strided_rows_of_feeds_and_outputs_cut_by_columns() -> None:
    x = er.input("x", (6, 4))
    w = er.input("w", (4, 5))
    h = er.relu(x)  # a fused kernel reading a feed
    y = er.einsum("ij,jk->ik", h, w)  # BLAS: strides cost it nothing
    z = 2.0 * y  # a fused kernel writing a graph output
    g = build_graph([z])
    hid, yid, zid = g.consumers(0)[0], g.consumers(g.consumers(0)[0])[0], g.outputs[0]
    cols, rows = (1, 2), (2, 1)
    assert join_cost(g, hid, cols) - join_cost(g, hid, rows) == 6 * STRIDED_ROW
    assert join_cost(g, zid, cols) - join_cost(g, zid, rows) == 6 * STRIDED_ROW
    # h read by each of the 5 blocks, the feed w once, cut by columns at no extra cost
    assert join_cost(g, yid, (1, 5, 1)) == 24 * 5 + 20


def test_joins_over_relations_pay_no_strided_rows() -> None:
    # A relation's tuples are gathered row by row whatever the cut: cutting its last key (here
    # v, of a relation that the dense view shows as a huge sparse input) costs no strided rows.
    a = er.relation("A", keys={"u": 1000, "v": 1000}, nnz=50)
    h = er.input("H", (1000, 8))
    y = er.einsum("uv,vd->ud", a, h, join=lambda x, z: er.exp(x * z))  # a fused kernel
    g = dense_view(build_graph([y]))
    v = next(n.id for n in g.nodes if n.op == "einsum" and n.einsum.inputs == ("uv", "vd"))
    assert g[g[v].inputs[0]].op == "input" and g[g[v].inputs[0]].density < 1
    assert strided_rows(g, v, {"u": 1, "d": 1, "v": 2}) == 0
