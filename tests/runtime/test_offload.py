"""The memory engine (TURNIP runtime) and budget-driven compilation.

Differential: on random graphs, partitions, placements and budgets, the memory engine's results
equal the reference interpreter's under jittered, throttled transfers and every priority, and
its exactly accounted peak stays within the budget. Plus hand-built cases: an exact-fit budget,
a budget one byte short, fixed-order replay, group locks, and `er.compile(memory_limit=...)`
on the workloads against `er.evaluate`.

Tolerance: float64 throughout; blocks add partials in another order than the whole-tensor
reference, so rtol 1e-12 with an absolute term scaled by the output (entries that cancel).
"""

from __future__ import annotations

import random
import re
import time

import numpy as np
import pytest

import einrel as er
from einrel.decompose import get_partitioner
from einrel.decompose.partition import Partition
from einrel.frontend.reference import bind_feeds, interpret
from einrel.ir.graph import Graph
from einrel.memory import min_budget, plan_memory
from einrel.memory.fit import fit_to_budget, task_working_sets
from einrel.runtime.mem.engine import MemEngine
from einrel.runtime.mem.schedule import MEM_PRIORITIES, final_holders, make_schedule
from einrel.runtime.transfer import Link, parse_bandwidth
from einrel.taskgraph.build import build_tasks
from einrel.taskgraph.place import place_tasks
from einrel.workloads import get_workload, max_rel_error
from helpers import check_result, close, feeds_for, random_budgets, random_graph, random_placed


@pytest.mark.parametrize("seed", range(48))
def test_engine_matches_reference_on_random_plans(seed: int) -> None:
    r = random.Random(seed)
    g = random_graph(r)
    tg = random_placed(r, g)
    feeds = feeds_for(r, g)
    want = interpret(g, feeds)
    mg = plan_memory(
        tg, random_budgets(r, tg), strategy=r.choice(["lowest-dependency", "first-fit"])
    )
    inputs, variables = bind_feeds(g, feeds)
    priority = MEM_PRIORITIES[seed % len(MEM_PRIORITIES)]
    eng = MemEngine(
        tg.ndev,
        priority=priority,
        workers_per_device=r.choice([1, 2]),
        transfer_bandwidth=r.choice(["50MB/s", 2e8]),
        jitter=0.5,
        seed=seed,
    )
    for _ in range(2):
        check_result(mg, eng.run(mg, inputs, variables), want)


def test_every_priority_on_one_tight_plan() -> None:
    r = random.Random(7)
    g = random_graph(r)
    while len(g.nodes) < 8:
        g = random_graph(r)
    tg = random_placed(r, g, ndev=2)
    mg = plan_memory(tg, min_budget(tg))
    assert mg.stats.evictions > 0
    feeds = feeds_for(r, g)
    want = interpret(g, feeds)
    inputs, variables = bind_feeds(g, feeds)
    eng = MemEngine(2, transfer_bandwidth="20MB/s", jitter=0.3, seed=1)
    for p in MEM_PRIORITIES:
        check_result(mg, eng.run(mg, inputs, variables, priority=p), want)
    keys = [float(-i) for i in range(len(mg.nodes))]  # explicit keys: latest node first
    check_result(mg, eng.run(mg, inputs, variables, priority=keys), want)


def test_fixed_order_replays_the_planning_order_per_resource() -> None:
    r = random.Random(3)
    g = random_graph(r)
    tg = random_placed(r, g, ndev=2)
    mg = plan_memory(tg, min_budget(tg))
    feeds = feeds_for(r, g)
    inputs, variables = bind_feeds(g, feeds)
    eng = MemEngine(
        2, priority="fixed", workers_per_device=2, transfer_bandwidth="30MB/s", jitter=0.5
    )
    res = eng.run(mg, inputs, variables, trace=True)
    check_result(mg, res, interpret(g, feeds))
    sched = make_schedule(mg, 2, "fixed")
    per: dict[int, list[int]] = {}
    for i in res.order:
        if sched.resource[i] >= 0:
            per.setdefault(sched.resource[i], []).append(i)
    for seq in per.values():
        assert seq == sorted(seq)


def test_touches_of_a_group_never_overlap() -> None:
    x = er.input("x", (6, 8), "float64")
    w = er.input("w", (8, 5), "float64")
    y = er.relu(x @ w)
    g = er.build_graph([y])
    dec = {
        n.id: Partition.whole(n.einsum.join_shape if n.op == "einsum" else n.shape) for n in g.nodes
    }
    mm = next(n for n in g.nodes if n.op == "einsum" and n.einsum.agg == "sum")
    dec[mm.id] = Partition.even(mm.einsum.join_shape, (1, 1, 8))  # 8 partials into one block
    tg = place_tasks(build_tasks(g, dec), [0] * len(build_tasks(g, dec).tasks), 1)
    mg = plan_memory(tg, None)
    assert len(next(iter(mg.groups.values()))) == 8
    feeds = {"x": np.random.default_rng(0).standard_normal((6, 8)), "w": np.ones((8, 5))}
    inputs, variables = bind_feeds(g, feeds)
    eng = MemEngine(1, priority="random", workers_per_device=4, max_running=4, seed=2)
    for _ in range(3):
        res = eng.run(mg, inputs, variables, trace=True)
        check_result(mg, res, interpret(g, feeds))
        spans = sorted(
            (s, e) for i, _, lane, s, e in res.events if i < len(mg) and mg[i].kind == "touch"
        )
        assert len(spans) == 8
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


# --- exact fit and too-small budgets --------------------------------------------------------


def elementwise_graph() -> tuple[Graph, er.Tensor, dict[str, np.ndarray]]:
    x = er.input("x", (4,), "float64")
    y = er.relu(x)
    return er.build_graph([y]), y, {"x": np.array([1.0, -2.0, 3.0, -4.0])}


def test_exact_fit_budget_runs_and_one_byte_less_fails_at_compile() -> None:
    _, y, feeds = elementwise_graph()
    # the finest split: 4 blocks of one float64 each; input + output, aligned to 16 B = 32 B
    prog = er.compile(
        y, devices=er.cpu(1), memory_limit=32, transfer_bandwidth="10MB/s", jitter=0.3
    )
    out = prog.run(feeds)
    np.testing.assert_array_equal(out, np.maximum(feeds["x"], 0))
    assert prog.report.peak_bytes[0] <= 32
    assert prog.report.bytes_offloaded > 0  # outputs pile up and go to host
    with pytest.raises(er.MemoryBudgetError, match=r"needs 32 bytes .* budget is 31 bytes") as ei:
        er.compile(y, devices=er.cpu(1, memory=31))
    assert ei.value.needed == 32  # type: ignore[attr-defined]
    assert "relu" in str(ei.value) or ei.value.node in str(ei.value)  # type: ignore[attr-defined]


def test_exact_fit_at_min_budget_of_a_fixed_plan() -> None:
    r = random.Random(11)
    g = random_graph(r)
    tg = random_placed(r, g, ndev=2)
    low = min_budget(tg)
    feeds = feeds_for(r, g)
    mg = plan_memory(tg, low)
    inputs, variables = bind_feeds(g, feeds)
    res = MemEngine(2, transfer_bandwidth="40MB/s", jitter=0.3, seed=0).run(mg, inputs, variables)
    check_result(mg, res, interpret(g, feeds))
    with pytest.raises(er.MemoryBudgetError, match="needs"):
        plan_memory(tg, [b - 1 for b in low])


def test_budget_one_byte_short_without_splitting_names_the_task() -> None:
    x = er.input("x", (8, 8), "float64")
    w = er.input("w", (8, 8), "float64")
    y = x @ w
    need = 3 * 8 * 8 * 8  # x, w and the product, whole
    prog = er.compile(y, devices=er.cpu(1), partitioner="none", memory_limit=need, fit_budget=False)
    got = prog.run({"x": np.eye(8), "w": np.arange(64.0).reshape(8, 8)})
    np.testing.assert_array_equal(got, np.arange(64.0).reshape(8, 8))
    with pytest.raises(
        er.MemoryBudgetError, match=rf"apply task t\d+ of graph node .*needs {need} bytes"
    ):
        er.compile(
            y, devices=er.cpu(1), partitioner="none", memory_limit=need - 1, fit_budget=False
        )
    # with splitting (the default) the same budget, and far less, works
    small = er.compile(y, devices=er.cpu(1), partitioner="none", memory_limit=need // 4)
    got = small.run({"x": np.eye(8), "w": np.arange(64.0).reshape(8, 8)})
    np.testing.assert_array_equal(got, np.arange(64.0).reshape(8, 8))
    assert small.report.peak_bytes[0] <= need // 4


# --- fit_to_budget --------------------------------------------------------------------------


def test_fit_to_budget_splits_below_the_unsplit_working_set() -> None:
    w = get_workload("llama_block", size="tiny", mode="train", dtype="float64")
    g = w.graph()
    dec = get_partitioner("eindecomp")(g, 2)
    ws = task_working_sets(build_tasks(g, dec))
    budget = max(ws) // 5
    fitted = fit_to_budget(g, dec, 2, budget)
    tg = build_tasks(g, fitted)
    assert max(task_working_sets(tg)) <= budget
    assert len(tg.tasks) > len(build_tasks(g, dec).tasks)
    assert sum(p.nblocks for p in fitted.values()) > sum(p.nblocks for p in dec.values())
    assert fit_to_budget(g, dec, 2, None) == dec
    with pytest.raises(er.MemoryBudgetError, match="finest split"):
        fit_to_budget(g, dec, 2, 8)


def test_fit_to_budget_keeps_user_split_points() -> None:
    x = er.input("x", (10, 6), "float64")
    y = er.exp(x)
    g = er.build_graph([y])
    node = next(n for n in g.nodes if n.op == "einsum")
    from einrel.decompose.partition import PartDim

    dec = {n.id: Partition.whole(n.shape) for n in g.nodes}
    dec[node.id] = Partition((PartDim((0, 3, 10)), PartDim((0, 6))))
    fitted = fit_to_budget(g, dec, 1, 400)  # the block [3, 10) x 6 needs 2 x 336 B
    assert set(fitted[node.id].dims[0].bounds) > {0, 3, 10}
    assert max(task_working_sets(build_tasks(g, fitted))) <= 400


# --- compile with a memory limit on the workloads -------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "ndev"),
    [
        ("ffnn_train", {"size": "small"}, 2),
        ("llama_block", {"size": "tiny", "mode": "train"}, 3),
        ("matmul_chain", {}, 2),
    ],
)
def test_compile_with_memory_limit_equals_evaluate(name: str, options: dict, ndev: int) -> None:
    w = get_workload(name, dtype="float64", **options)
    feeds = w.make_feeds(0)
    want = er.evaluate(w.outputs, feeds)
    free = er.compile(w.outputs, devices=er.cpu(ndev))
    peak = max(plan_memory(free.plan.tasks, None).stats.peak_bytes)
    for frac, priority in [(0.5, "critical-path"), (0.15, "given"), (0.15, "fixed")]:
        prog = er.compile(
            w.outputs,
            devices=er.cpu(ndev, memory=int(peak * frac)),
            priority=priority,
            transfer_bandwidth="500MB/s",
            jitter=0.3,
            engine_options={"seed": 0},
        )
        got = prog.run(feeds)
        for a, b in zip(got, want, strict=True):
            assert max_rel_error(a, b) < 1e-12
        rep = prog.report
        assert set(rep.peak_bytes) == set(range(ndev))
        assert max(rep.peak_bytes.values()) <= int(peak * frac)
        assert rep.bytes_offloaded == sum(prog.plan.memgraph.stats.evicted_bytes)


def test_memory_limit_string_and_report() -> None:
    w = get_workload("ffnn_train", size="tiny", dtype="float64")
    feeds = w.make_feeds(1)
    prog = er.compile(w.outputs, devices=er.cpu(2), memory_limit="1KiB")
    got = prog.run(feeds, trace=None)
    for a, b in zip(got, er.evaluate(w.outputs, feeds)):
        close(a, b)
    assert prog.plan.memgraph.budgets == (1024, 1024)
    assert all(v <= 1024 for v in prog.report.peak_bytes.values())
    assert "offloaded" in str(prog.report)


def test_trace_of_a_memory_run(tmp_path) -> None:
    import json

    w = get_workload("matmul_chain", dtype="float64")
    prog = er.compile(w.outputs, devices=er.cpu(2, memory=4096), transfer_bandwidth="100MB/s")
    prog.run(w.make_feeds(0), trace=str(tmp_path / "t.json"))
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    cats = {e.get("cat") for e in events}
    assert {"evict", "load", "compute"} <= cats
    # Events name the tensor and its einsum; counters track device and host bytes.
    names = {e["name"] for e in events if e["ph"] == "X"}
    assert any(re.fullmatch(r"apply %\d+ \[\w+,\w+->\w+\]", n) for n in names), names
    assert all("node" in e["args"] for e in events if e.get("cat") == "evict")
    assert all("einsum" in e["args"] for e in events if e["name"].startswith("apply"))
    counters = [e for e in events if e["ph"] == "C"]
    assert {e["pid"] for e in counters} == {0, 1}
    for d in (0, 1):
        dev = [e["args"]["device"] * 2**20 for e in counters if e["pid"] == d]
        host = [e["args"]["offloaded to host"] * 2**20 for e in counters if e["pid"] == d]
        assert min(dev) >= 0 and min(host) >= 0 and max(dev) <= 4096
        assert round(max(dev)) == prog.report.peak_bytes[d]
    assert max(e["args"]["offloaded to host"] for e in counters) > 0
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_engine_options_need_a_budget_on_cpu() -> None:
    x = er.input("x", (4,), "float64")
    with pytest.raises(er.CompileError, match="memory engine"):
        er.compile(er.relu(x), devices=er.cpu(1), transfer_bandwidth="4GB/s")


# --- transfers ------------------------------------------------------------------------------


def test_parse_bandwidth() -> None:
    assert parse_bandwidth("4GB/s") == 4e9
    assert parse_bandwidth("2 GiB/s") == 2 * 2**30
    assert parse_bandwidth(" 500MB ") == 5e8
    assert parse_bandwidth(1e6) == 1e6
    assert parse_bandwidth(None) is None
    for bad in ("fast", "4 GB/h", -1, 0, True):
        with pytest.raises(er.CompileError):
            parse_bandwidth(bad)
    with pytest.raises(er.CompileError, match="jitter"):
        MemEngine(1, jitter=1.5)
    with pytest.raises(er.CompileError, match="priority"):
        MemEngine(1, priority="sideways")


def test_link_throttles_with_jitter() -> None:
    slept: list[float] = []
    link = Link(1e6, jitter=0.3, seed=0, sleep=slept.append)
    for _ in range(50):
        link.transfer(lambda: None, 1000)
    assert all(1e-3 / 1.3 - 1e-4 <= s <= 1e-3 / 0.7 for s in slept)
    assert max(slept) - min(slept) > 2e-4  # the jitter really varies
    assert link.nbytes == 50_000


# --- planning order, simulated clock, failures ----------------------------------------------


def test_depth_first_renumbering_is_an_equivalent_task_graph() -> None:
    from einrel.memory.order import depth_first_order, reorder
    from einrel.taskgraph.interpret import interpret_tasks

    r = random.Random(21)
    g = random_graph(r)
    tg = random_placed(r, g, ndev=2)
    order = depth_first_order(tg)
    assert sorted(order) == list(range(len(tg.tasks)))
    re = reorder(tg, "depth-first")
    feeds = feeds_for(r, g)
    for a, b in zip(interpret_tasks(re, feeds), interpret(g, feeds)):
        close(a, b)
    assert reorder(tg, "id") is tg
    with pytest.raises(er.CompileError, match="planning order"):
        reorder(tg, "sideways")


def test_simulated_clock_runs_every_priority_within_budget() -> None:
    from einrel.runtime.mem.sim import simulate_memory

    r = random.Random(9)
    g = random_graph(r)
    tg = random_placed(r, g, ndev=2)
    mg = plan_memory(tg, min_budget(tg))
    n = len(mg.nodes) + len(final_holders(mg))
    for p in MEM_PRIORITIES:
        res = simulate_memory(mg, p, transfer_bandwidth="1MB/s", jitter=0.3, seed=0)
        assert res.makespan_s > 0
        assert all(res.peak_bytes[d] <= b for d, b in enumerate(mg.budgets))
        assert len(res.order) == n
    serial = simulate_memory(mg, "serial", transfer_bandwidth="1MB/s")
    overlapped = simulate_memory(mg, "fixed", transfer_bandwidth="1MB/s")
    assert overlapped.makespan_s <= serial.makespan_s + 1e-12


def test_a_failing_kernel_names_the_memory_node() -> None:
    from einrel.runtime.backends.numpy_arenas import NumpyArenas

    class Broken(NumpyArenas):
        def compute(self, n, first, inputs, variables, link):
            if n.kind == "compute" and self.mg.taskgraph.tasks[n.block].kind == "apply":
                raise FloatingPointError("boom")
            return super().compute(n, first, inputs, variables, link)

    _, y, feeds = elementwise_graph()
    prog = er.compile(y, devices=er.cpu(1), memory_limit=64)
    prog.engine.backend = Broken()
    with pytest.raises(
        er.ExecutionError, match=r"memory node n\d+ \(compute of t\d+, apply .*boom"
    ):
        prog.run(feeds)


def _relu_layer() -> list[er.Tensor]:
    x = er.input("x", (512, 256))
    w = er.input("w", (256, 1024))
    loss = er.sum(er.relu(x @ w))
    return [loss, *er.grad(loss, [w])]


def test_absurdly_small_budget_stops_at_the_task_limit_and_names_a_sensible_budget() -> None:
    """300 bytes is feasible for this layer only with blocks of a few elements (millions of
    tasks): refinement stops at max_tasks and names the smallest budget it reached within it,
    which then compiles."""
    outs = _relu_layer()
    with pytest.raises(er.MemoryBudgetError, match=r"more than 2000 tasks.*max_tasks") as info:
        er.compile(outs, devices=er.cpu(2, memory=300), max_tasks=2000)
    msg = str(info.value)
    budget = int(re.search(r"fits within 2000 tasks is about (\d+) bytes", msg).group(1))
    assert info.value.needed == budget  # type: ignore[attr-defined]
    prog = er.compile(outs, devices=er.cpu(2, memory=budget), max_tasks=2000)
    assert len(prog.plan.graph) and prog.plan.memgraph is not None
    with pytest.raises(er.MemoryBudgetError, match=r"more than 20000 tasks"):
        er.compile(outs, devices=er.cpu(2, memory=300))  # the default limit
    with pytest.raises(er.CompileError, match=r"max_tasks must be an int >= 1"):
        er.compile(outs, devices=er.cpu(2, memory=300), max_tasks=0)


def test_step_progress_shows_only_after_its_delay(capsys: pytest.CaptureFixture[str]) -> None:
    from einrel.progress import StepProgress

    with StepProgress("er.compile", delay_s=60) as p:
        p.step("quick")
    assert capsys.readouterr().err == ""
    with StepProgress("er.compile", delay_s=0.0) as p:
        time.sleep(0.3)
        p.step("placing 5 tasks")
        time.sleep(0.3)
    assert "er.compile" in capsys.readouterr().err
