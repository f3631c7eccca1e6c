"""The simulator against hand-computed schedules, the Doppler paper's reference columns, and
invariants of work-conserving FIFO execution on random DAGs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einrel.errors import CompileError
from einrel.place import PlaceGraph, load_graph_file, simulate
from einrel.place.dag import lower_bound, single_device_makespan
from einrel.place.graphfile import RELEASED_DIR
from einrel.place.simulate import make_simulator, makespan

DATA = RELEASED_DIR  # Doppler's released graphs, shipped inside the package

# file: (devices, 1 device, round-robin) in units of 1e10, the Doppler paper
REFERENCE = {
    "chain_mm_112nodes": (4, 4800.3, 2000.1),
    "ffnn_192nodes": (4, 226.8, 84.2),
    "transformer_block_215nodes": (4, 388.7, 255.0),
    "full_transformer_layer_261nodes": (4, 389.0, 274.9),
    "8gpu_transformer_block": (8, 777.2, 342.0),
    "8gpu_full_transformer": (8, 777.9, 323.6),
}


def graph(comp, comm, edges) -> PlaceGraph:
    return PlaceGraph(comp=tuple(comp), comm=tuple(comm), edges=tuple(edges), name="hand")


def test_diamond_by_hand() -> None:
    g = graph((2, 4, 1, 2), (3, 1, 5, 0), ((0, 1), (0, 2), (1, 3), (2, 3)))
    s = simulate(g, [0, 0, 1, 0])
    # 0 on d0 [0,2]; 1 on d0 [2,6]; 2 on d1 waits for 0's transfer: [5,6];
    # 3 on d0 waits for 2's transfer 6 + 5 = 11: [11,13]
    assert s.start == (0.0, 2.0, 5.0, 11.0)
    assert s.end == (2.0, 6.0, 6.0, 13.0)
    assert s.request == (0.0, 2.0, 5.0, 11.0)
    assert s.makespan == 13.0
    assert s.critical_chain() == [0, 2, 3]
    assert simulate(g, [0, 0, 0, 0]).makespan == 9.0
    assert simulate(g, [1, 1, 1, 1]).makespan == 9.0


def test_queue_is_fifo_by_request_time_not_by_id() -> None:
    # d0 is busy with op 0 until 5. Op 4 requests d0 at 2 (op 1's output), op 3 at 3 (op 2's).
    # FIFO runs 4 [5,9] then 3 [9,11]; op 5 on d1 gets 4's output at 9 + 2 = 11: [11,12].
    # (Serving the smaller id first would give 3 [5,7], 4 [7,11], 5 [13,14].)
    g = graph(
        (5, 1, 1, 2, 4, 1),
        (0, 1, 1, 0, 2, 0),
        ((1, 4), (2, 3), (4, 5)),
    )
    s = simulate(g, [0, 1, 1, 0, 0, 1])
    assert s.request[3:5] == (3.0, 2.0)
    assert s.start == (0.0, 0.0, 1.0, 9.0, 5.0, 11.0)
    assert s.makespan == 12.0
    assert s.cause[4] == 0 and s.cause[3] == 4  # both waited for d0


def test_simultaneous_requests_go_in_creation_order() -> None:
    # Ops 2 and 3 both request d2 at 4. Op 3's request was created when op 0 finished (t=1),
    # op 2's when op 1 finished (t=3), so op 3 goes first [4,6] and op 2 second [6,8];
    # op 4 on d0 gets 2's output at 8 + 1: [9,10]. Smaller-id-first would give makespan 8.
    g = graph(
        (1, 3, 2, 2, 1),
        (3, 1, 1, 0, 0),
        ((0, 3), (1, 2), (2, 4)),
    )
    s = simulate(g, [0, 1, 2, 2, 0])
    assert s.request[2] == s.request[3] == 4.0
    assert s.start[3] == 4.0 and s.start[2] == 6.0
    assert s.makespan == 10.0


def test_sources_in_id_order_and_a_freed_device_sees_same_time_requests() -> None:
    # Three sources on one device run in id order; op 3 (on d1) waits for op 0's output.
    g = graph((2, 2, 2, 1), (1, 1, 1, 0), ((0, 3),))
    s = simulate(g, [0, 0, 0, 1])
    assert s.start == (0.0, 2.0, 4.0, 3.0)
    # A device freed at t takes a request made at exactly t: op 1 finishes on d0 at 2 and
    # op 2 (on d0, fed by op 1) requests at 2 and starts at once.
    h = graph((1, 1, 1), (0, 0, 0), ((0, 1), (1, 2)))
    assert simulate(h, [0, 0, 0]).start == (0.0, 1.0, 2.0)


def test_zero_costs() -> None:
    g = graph((0, 0, 3), (0, 0, 0), ((0, 1), (1, 2)))
    assert simulate(g, [0, 1, 0]).makespan == 3.0
    assert simulate(PlaceGraph((), (), ()), []).makespan == 0.0


@pytest.mark.parametrize(
    ("assignment", "ndev", "needle"),
    [
        ([0, 0], None, "2 entries"),
        ([0, 0, -1], None, "device -1"),
        ([0, 0, 2], 2, "expected 0..1"),
        ([0, 0, "1"], None, "device '1'"),
        ([0, 0, 1.0], None, "device 1.0"),
    ],
)
def test_bad_assignments(assignment, ndev, needle) -> None:
    g = graph((1, 1, 1), (1, 1, 1), ())
    with pytest.raises(CompileError, match=needle):
        simulate(g, assignment, ndev)
    with pytest.raises(CompileError):
        makespan(g, assignment, ndev)


@pytest.mark.parametrize("stem", sorted(REFERENCE))
def test_reference_columns(stem: str) -> None:
    ndev, one, rr = REFERENCE[stem]
    g = load_graph_file(DATA / f"{stem}.txt")
    n = g.num_ops
    assert abs(simulate(g, [0] * n).makespan / 1e10 - one) <= 0.05 + 1e-9
    assert abs(single_device_makespan(g) / 1e10 - one) <= 0.05 + 1e-9
    round_robin = [v % ndev for v in range(n)]
    assert abs(simulate(g, round_robin, ndev).makespan / 1e10 - rr) <= 0.05 + 1e-9
    assert make_simulator(g)(round_robin) == simulate(g, round_robin).makespan


@st.composite
def placed_dags(draw):
    n = draw(st.integers(0, 14))
    costs = st.integers(0, 20).map(float)
    comp = draw(st.lists(costs, min_size=n, max_size=n))
    comm = draw(st.lists(costs, min_size=n, max_size=n))
    pairs = [(a, b) for b in range(n) for a in range(b)]
    edges = draw(st.lists(st.sampled_from(pairs), max_size=3 * n)) if pairs else []
    perm = draw(st.permutations(range(n)))  # ids need not be topological
    g = PlaceGraph(
        comp=tuple(comp[perm.index(v)] for v in range(n)),
        comm=tuple(comm[perm.index(v)] for v in range(n)),
        edges=tuple((perm[a], perm[b]) for a, b in edges),
    )
    ndev = draw(st.integers(1, 4))
    assignment = draw(st.lists(st.integers(0, ndev - 1), min_size=n, max_size=n))
    return g, ndev, assignment


@settings(max_examples=300, deadline=None)
@given(placed_dags())
def test_schedules_are_legal_work_conserving_and_bounded(case) -> None:
    g, ndev, a = case
    s = simulate(g, a, ndev)
    n = g.num_ops
    assert s.makespan >= lower_bound(g, ndev)
    assert s.makespan == max(s.end, default=0.0)
    assert simulate(g, [0] * n).makespan == single_device_makespan(g)
    for v in range(n):
        arrivals = [s.end[u] + (g.comm[u] if a[u] != a[v] else 0.0) for u in g.preds[v]]
        assert s.request[v] == max(arrivals, default=0.0)
        assert s.start[v] >= s.request[v]
        assert s.end[v] == s.start[v] + g.comp[v]
        if s.start[v] > s.request[v]:  # it queued, so its device was busy until it started
            u = s.cause[v]
            assert a[u] == a[v] and s.end[u] == s.start[v]
    for d in range(ndev):
        mine = [v for v in range(n) if a[v] == d]
        busy = sorted((s.start[v], s.end[v]) for v in mine)
        for (_, e0), (s1, _) in zip(busy, busy[1:]):
            assert e0 <= s1  # capacity 1
        for v in mine:
            # work-conserving: from its request until its start, v's device never idles
            assert _covered(busy, s.request[v], s.start[v])
            for w in mine:
                if s.request[w] <= s.start[v] < s.start[w]:
                    # w was waiting when v started: FIFO says v asked no later than w
                    assert s.request[v] <= s.request[w]


def _covered(busy: list[tuple[float, float]], lo: float, hi: float) -> bool:
    t = lo
    for s0, e0 in busy:
        if s0 <= t < e0:
            t = e0
    return t >= hi
