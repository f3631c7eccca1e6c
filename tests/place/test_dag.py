"""PlaceGraph validation and the list-scheduling quantities, on graphs worked by hand."""

from __future__ import annotations

import math

import pytest

from einrel.errors import CompileError, EinrelError
from einrel.place.dag import (
    PlaceGraph,
    b_levels,
    check_ndev,
    longest_compute_path,
    lower_bound,
    single_device_makespan,
    t_levels,
    topological_order,
)


def diamond() -> PlaceGraph:
    # 0 -> {1, 2} -> 3
    return PlaceGraph(
        comp=(2, 4, 1, 2), comm=(3, 1, 5, 0), edges=((0, 1), (0, 2), (1, 3), (2, 3)), name="d"
    )


def test_adjacency_is_derived_sorted_and_deduplicated() -> None:
    g = PlaceGraph(comp=(1, 1, 1), comm=(0, 0, 0), edges=((0, 2), (1, 2), (0, 2)))
    assert g.preds == ((), (), (0, 1))
    assert g.succs == ((2,), (2,), ())
    assert g.edges == ((0, 2), (1, 2), (0, 2))  # kept as given
    assert g.num_ops == 3
    assert all(isinstance(c, float) for c in g.comp + g.comm)


def test_topological_order_prefers_small_ids() -> None:
    g = PlaceGraph(comp=(1,) * 5, comm=(0,) * 5, edges=((3, 0), (4, 1), (0, 2)))
    assert topological_order(g) == (3, 0, 2, 4, 1)


def test_b_and_t_levels_by_hand() -> None:
    g = diamond()
    # sinks: b3 = 2; b1 = 4 + 1 + 2 = 7; b2 = 1 + 5 + 2 = 8; b0 = 2 + 3 + max(7, 8) = 13
    assert b_levels(g) == (13.0, 7.0, 8.0, 2.0)
    # t0 = 0; t1 = t2 = 0 + 2 + 3 = 5; t3 = max(5 + 4 + 1, 5 + 1 + 5) = 11
    assert t_levels(g) == (0.0, 5.0, 5.0, 11.0)


def test_bounds_by_hand() -> None:
    g = diamond()
    assert single_device_makespan(g) == 9.0
    assert longest_compute_path(g) == 8.0  # 0 -> 1 -> 3
    assert lower_bound(g, 1) == 9.0
    assert lower_bound(g, 2) == 8.0  # path beats 9 / 2
    wide = PlaceGraph(comp=(3, 3, 3, 3), comm=(1, 1, 1, 1), edges=())
    assert lower_bound(wide, 2) == 6.0  # load beats the path (3)


def test_empty_graph() -> None:
    g = PlaceGraph(comp=(), comm=(), edges=())
    assert g.num_ops == 0
    assert single_device_makespan(g) == 0.0
    assert lower_bound(g, 3) == 0.0
    assert b_levels(g) == ()


@pytest.mark.parametrize(
    ("comp", "comm", "edges", "needle"),
    [
        ((1, 1), (1,), (), "comm costs"),
        ((1, -1), (1, 1), (), "compute cost -1"),
        ((1, 1), (1, math.nan), (), "comm cost nan"),
        ((1, 1), (1, math.inf), (), "comm cost inf"),
        ((1, 1), (1, 1), ((0, 2),), "edge 0"),
        ((1, 1), (1, 1), ((-1, 1),), "edge 0"),
        ((1, 1, 1), (1, 1, 1), ((0, 1), (1, 2), (2, 0)), "cycle"),
        ((1,), (1,), ((0, 0),), "cycle"),
    ],
)
def test_invalid_graphs_raise(comp, comm, edges, needle) -> None:
    with pytest.raises(CompileError, match=needle) as info:
        PlaceGraph(comp=comp, comm=comm, edges=edges, name="bad")
    assert isinstance(info.value, EinrelError)


@pytest.mark.parametrize("ndev", [0, -1, 1.5, True, "2"])
def test_bad_device_counts(ndev) -> None:
    with pytest.raises(CompileError):
        check_ndev(ndev)
    with pytest.raises(CompileError):
        lower_bound(diamond(), ndev)
