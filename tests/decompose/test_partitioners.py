"""Every partitioner gives a valid plan whose blocks compute exactly what the reference does;
baseline-specific behaviour; errors that name the node and shape."""

from __future__ import annotations

import numpy as np
import pytest

import einrel as er
from einrel.decompose import PARTITIONERS, get_partitioner, plan_cost
from einrel.decompose.baselines import batch_classes, halve_largest
from einrel.decompose.chunks import input_bounds
from einrel.errors import CompileError
from einrel.frontend.reference import evaluate
from einrel.frontend.tensor import build_graph
from einrel.ir.graph import Graph
from einrel.place.locate import eindecomp_greedy
from einrel.taskgraph.build import build_tasks, check_decomposition
from einrel.taskgraph.interpret import interpret_tasks
from einrel.taskgraph.place import place_tasks
from helpers import round_robin

F64 = "float64"


def structural():
    """Slices, a concat, a squeeze and a real reshape, a fill, a node read twice."""
    x = er.input("x", (6, 8), F64)
    w = er.input("w", (8, 4), F64)
    h = er.relu(er.einsum("bi,io->bo", x, w))  # 6x4
    top, bot = er.slice(h, (0, 0), (3, 4)), er.slice(h, (3, 0), (6, 4))
    c = er.concat([bot, top, h], axis=0)  # 12x4
    sq = er.reshape(er.einsum("bo->o", c), (1, 4))  # squeeze-style: adds a unit dim
    flat = er.reshape(c, (6, 8))  # merges dims: stays whole
    mask = er.fill((6, 8), 0.5, F64)
    y = er.einsum("ab,ab->ab", flat, mask, agg=None) * flat
    w2 = er.input("w2", (8, 4), F64)
    z = er.einsum("ab,bc,c->ac", y, w2, er.reshape(sq, (4,)))
    rng = np.random.default_rng(0)
    shapes = {"x": (6, 8), "w": (8, 4), "w2": (8, 4)}
    return [z, sq], {k: rng.standard_normal(s) for k, s in shapes.items()}


def workload(name: str, **kw):
    from einrel.workloads import get_workload

    wl = get_workload(name, size="tiny", dtype=F64, **kw)
    return wl.outputs, wl.make_feeds(0)


GRAPHS = {
    "structural": structural,
    "chain": lambda: workload("matmul_chain"),
    "ffnn": lambda: workload("ffnn_train"),
    "llama": lambda: workload("llama_block"),
    "llama_train": lambda: workload("llama_block", mode="train"),
}


def options(name: str, graph: Graph) -> dict:
    if name == "chunks":
        first = next(n for n in graph.nodes if n.op == "input")
        if any(n.op == "concat" for n in graph.nodes):
            return {"chunks": {"x": "auto", "w": (-1, 2)}}  # cuts the slices' kept dim
        return {"chunks": {first.name: "auto"}}
    return {}


def check_runs(graph: Graph, dec, ndev: int, feeds, want) -> None:
    check_decomposition(graph, dec)
    tasks = build_tasks(graph, dec)
    for locate in (eindecomp_greedy, round_robin):
        devices = locate(tasks, ndev)
        assert len(devices) == len(tasks)
        got = interpret_tasks(place_tasks(tasks, devices, ndev), feeds)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("graph_name", list(GRAPHS))
@pytest.mark.parametrize("partitioner", list(PARTITIONERS))
def test_every_partitioner_runs_correctly_on_every_graph(graph_name, partitioner) -> None:
    outputs, feeds = GRAPHS[graph_name]()
    graph = build_graph(outputs)
    want = evaluate(outputs, feeds)
    for ndev in (1, 3, 4):
        dec = get_partitioner(partitioner, **options(partitioner, graph))(graph, ndev)
        assert set(dec) == {n.id for n in graph.nodes}
        assert plan_cost(graph, dec) >= 0
        check_runs(graph, dec, ndev, feeds, want)


@pytest.mark.parametrize("space", ["all", "all_range"])
@pytest.mark.parametrize("graph_name", ["structural", "llama"])
def test_eindecomp_cuts_every_node_in_the_full_spaces(graph_name, space) -> None:
    outputs, feeds = GRAPHS[graph_name]()
    graph = build_graph(outputs)
    want = evaluate(outputs, feeds)
    for ndev in (2, 4):
        dec = get_partitioner("eindecomp", space=space)(graph, ndev)
        cut = [n for n in graph.nodes if n.op in ("slice", "concat") and dec[n.id].nblocks > 1]
        assert graph_name != "structural" or cut
        check_runs(graph, dec, ndev, feeds, want)


def test_real_reshapes_stay_whole_and_unit_dims_are_not_cut() -> None:
    graph = build_graph(structural()[0])
    dec = get_partitioner("eindecomp")(graph, 4)
    for n in graph.nodes:
        if n.op == "reshape" and n.shape == (6, 8):
            assert dec[n.id].nblocks == 1
        assert all(p <= s for p, s in zip(dec[n.id].grid, dec[n.id].shape))


# --- baselines ------------------------------------------------------------------------------


def llama(batch: int = 8, mode: str = "inference") -> Graph:
    from einrel.workloads import get_workload

    return get_workload("llama_block", size="tiny", mode=mode, batch=batch).graph()


def grid_of(graph: Graph, dec, name: str) -> dict[str, int]:
    n = next(m for m in graph.nodes if m.name == name)
    return dict(zip(range(len(n.shape)), dec[n.id].grid))


def test_data_parallel_cuts_the_batch_everywhere_and_nothing_else() -> None:
    graph = llama(batch=8, mode="train")
    dec = get_partitioner("data-parallel")(graph, 4)
    x = next(n for n in graph.nodes if n.name == "x")
    assert dec[x.id].grid == (4, 1, 1)
    for n in graph.nodes:
        grid = dec[n.id].grid
        assert sorted(grid)[:-1] == [1] * (len(grid) - 1)  # at most one cut dim
        if n.op == "input" and n.name not in ("x", "target"):
            assert dec[n.id].nblocks == 1  # weights stay whole
    # the gradient of a weight is cut on the batch it sums over: partial sums, then a reduce
    grads = [n for n in graph.nodes if n.op == "einsum" and n.einsum.spec == "bshe,bsd->dhe"]
    assert grads and all(dec[n.id].grid[n.einsum.labels.index("b")] == 4 for n in grads)
    assert len(batch_classes(graph)) == 1


def test_data_parallel_with_a_small_batch_cuts_as_far_as_it_can() -> None:
    graph = llama(batch=2)
    dec = get_partitioner("data-parallel")(graph, 8)
    x = next(n for n in graph.nodes if n.name == "x")
    assert dec[x.id].grid == (2, 1, 1)


def test_data_parallel_takes_named_data_inputs() -> None:
    graph = llama(batch=8)
    dec = get_partitioner("data-parallel", data=["wq"])(graph, 4)
    wq = next(n for n in graph.nodes if n.name == "wq")
    assert dec[wq.id].grid == (4, 1, 1)  # wq's dim 0 is the model width, now "the batch"
    with pytest.raises(CompileError, match="nope"):
        get_partitioner("data-parallel", data=["nope"])(graph, 4)


def test_model_parallel_cuts_heads_and_the_mlp_width() -> None:
    graph = llama(batch=2)
    dec = get_partitioner("model-parallel")(graph, 4)
    by_spec = {}
    for n in graph.nodes:
        if n.op == "einsum":
            by_spec.setdefault(n.einsum.spec, []).append(n)
    for spec, label in [
        ("bsd,dhe->bshe", "h"),
        ("bshe,bthe->bhst", "h"),
        ("bshe,hed->bsd", "h"),  # row-parallel: the head sum is split, then reduced
        ("bsd,df->bsf", "f"),
        ("bsf,fd->bsd", "f"),
    ]:
        for n in by_spec[spec]:
            parts = dict(zip(n.einsum.labels, dec[n.id].grid))
            assert parts[label] > 1, (spec, parts)
            assert parts["b"] == 1 and parts["s"] == 1, (spec, parts)
    norm = by_spec["abc->ab"][0]
    assert dec[norm.id].nblocks == 1  # norms are replicated, not cut


def test_largest_dim_halves_the_biggest_blocks_of_contractions() -> None:
    assert halve_largest((64, 16, 16), 4) == (4, 1, 1)
    assert halve_largest((16, 16, 16), 8) == (2, 2, 2)
    assert halve_largest((16, 16), 6) == (3, 2)
    a, b = er.input("a", (64, 16)), er.input("b", (16, 16))
    y = er.relu(er.einsum("ij,jk->ik", a, b))
    graph = build_graph([y])
    dec = get_partitioner("largest-dim")(graph, 4)
    mm, relu = graph.nodes[2], graph.nodes[3]
    assert dec[mm.id].grid == (4, 1, 1)
    assert dec[relu.id].grid == (4, 1)  # inferred from its producer


def test_none_keeps_everything_whole() -> None:
    graph = llama()
    dec = get_partitioner("none")(graph, 8)
    assert all(p.nblocks == 1 for p in dec.values())


# --- user chunks -----------------------------------------------------------------------------


def test_chunks_follow_dask_and_spread_along_labels() -> None:
    x = er.input("x", (10, 6))
    w = er.input("w", (6, 4))
    y = er.einsum("bi,io->bo", x, w)
    graph = build_graph([er.relu(y)])
    dec = get_partitioner("chunks", chunks={"x": (4, -1)})(graph, 4)
    assert dec[0].dims[0].bounds == (0, 4, 8, 10)
    assert dec[0].dims[1].bounds == (0, 6)
    mm = graph.nodes[2]
    assert mm.einsum.labels == "boi"
    assert dec[mm.id].dims[0].bounds == (0, 4, 8, 10)
    assert dec[graph.outputs[0]].dims[0].bounds == (0, 4, 8, 10)
    assert dec[1].grid == (1, 1)  # w: nothing in its classes was cut


def test_chunk_specs() -> None:
    x = build_graph([er.input("x", (10, 6, 4))]).nodes[0]
    assert input_bounds(x, ((5, 5), None, 2), 4) == ((0, 5, 10), (0, 6), (0, 2, 4))
    assert input_bounds(x, 100, 4) == ((0, 10), (0, 6), (0, 4))
    assert input_bounds(x, {1: 3}, 4) == ((0, 10), (0, 3, 6), (0, 4))
    # "auto" takes the devices that are left, near-equally, in dim order
    eight = (0, 2, 4, 5, 6, 7, 8, 9, 10)
    assert input_bounds(x, ("auto", -1, "auto"), 8) == (eight, (0, 6), (0, 4))
    assert input_bounds(x, ("auto", -1, "auto"), 20) == ((0, *range(1, 11)), (0, 6), (0, 2, 4))
    assert input_bounds(x, (2, "auto", -1), 8) == ((0, 2, 4, 6, 8, 10), (0, 6), (0, 4))
    assert input_bounds(x, (5, "auto", -1), 8) == ((0, 5, 10), (0, 2, 4, 5, 6), (0, 4))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ((4, -1), "rank 3"),
        ((0, -1, -1), "block size"),
        (((3, 3), -1, -1), "add up to 10"),
        (("big", -1, -1), "expected an int"),
        ({5: 2}, "axes"),
    ],
)
def test_bad_chunks_name_the_input_and_shape(spec, match) -> None:
    graph = build_graph([er.relu(er.input("x", (10, 6, 4)))])
    with pytest.raises(CompileError, match=match) as err:
        get_partitioner("chunks", chunks={"x": spec})(graph, 4)
    assert "'x'" in str(err.value) and "(10, 6, 4)" in str(err.value)


def test_chunks_for_unknown_inputs_and_missing_chunks() -> None:
    graph = build_graph([er.relu(er.input("x", (10, 6)))])
    with pytest.raises(CompileError, match="not graph inputs"):
        get_partitioner("chunks", chunks={"y": 2})(graph, 2)
    with pytest.raises(CompileError, match="chunks="):
        get_partitioner("chunks")(graph, 2)


# --- registry and errors ------------------------------------------------------------------------


def test_unknown_partitioner_lists_the_valid_names() -> None:
    with pytest.raises(CompileError) as err:
        get_partitioner("magic")
    for name in ("eindecomp", "data-parallel", "model-parallel", "largest-dim", "none", "chunks"):
        assert name in str(err.value)


def test_unknown_options_are_refused_with_the_valid_ones() -> None:
    graph = llama()
    with pytest.raises(CompileError, match="space"):
        get_partitioner("eindecomp", spaec="all")(graph, 2)
    part = get_partitioner(er.partitioners.EinDecomp(sweeps=1), slots=2)  # objects take options
    assert (part.sweeps, part.slots) == (1, 2) and str(part) == "eindecomp(slots=2, sweeps=1)"


@pytest.mark.parametrize("ndev", [0, -2, 2.0, "4", True])
@pytest.mark.parametrize("partitioner", list(PARTITIONERS))
def test_bad_device_counts(partitioner, ndev) -> None:
    graph = build_graph([er.relu(er.input("x", (4, 4)))])
    opts = {"chunks": {"x": 2}} if partitioner == "chunks" else {}
    with pytest.raises(CompileError, match="devices"):
        get_partitioner(partitioner, **opts)(graph, ndev)


def test_bad_eindecomp_options_and_fixed_partitions() -> None:
    graph = build_graph(
        [er.relu(er.einsum("ij,jk->ik", er.input("a", (8, 8)), er.input("b", (8, 8))))]
    )

    def run(graph, ndev, **options):
        return get_partitioner("eindecomp", **options)(graph, ndev)

    with pytest.raises(CompileError, match="candidate space"):
        run(graph, 2, space="everything")
    with pytest.raises(CompileError, match="repartition"):
        run(graph, 2, repartition="guess")
    with pytest.raises(CompileError, match="seed"):
        run(graph, 2, seeds=("random",))
    with pytest.raises(CompileError, match=r"node %2.*\(8, 8, 8\)"):
        run(graph, 2, fixed={2: er.decompose.Partition.even((8, 8), (2, 1))})
    with pytest.raises(CompileError, match="unknown node"):
        run(graph, 2, fixed={"zz": er.decompose.Partition.even((8, 8), (2, 1))})
    pinned = er.decompose.Partition.even((8, 8, 8), (1, 1, 2))
    dec = run(graph, 2, fixed={2: pinned, "a": er.decompose.Partition.even((8, 8), (2, 2))})
    assert dec[2] == pinned and dec[0].grid == (2, 2)


def test_partitions_that_do_not_fit_are_caught_before_tasks_are_built() -> None:
    graph = build_graph([er.relu(er.input("x", (4, 4)))])
    dec = get_partitioner("none")(graph, 2)
    dec[1] = er.decompose.Partition.even((4, 5), (1, 1))
    with pytest.raises(CompileError, match=r"%1.*\(4, 4\)"):
        check_decomposition(graph, dec)
