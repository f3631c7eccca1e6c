"""`er.compile` end to end: every partitioner and placer on the three workloads agrees with the
reference interpreter; the report, explain(), traces and simulate() work; bad input fails at
compile time with an EinrelError; a kernel failing inside a worker fails the run cleanly."""

from __future__ import annotations

import io
import json
import re
import threading
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console

import einrel as er
from einrel.decompose.partition import Partition
from einrel.decompose.partitioners import PARTITIONERS
from einrel.taskgraph.execute import RULES
from einrel.workloads import get_workload
from helpers import run_with_deadline

WORKLOADS: dict[str, dict[str, Any]] = {
    "matmul_chain": {},
    "ffnn_train": {"with_grads": True},
    "llama_block": {"mode": "train", "with_grads": True},
}
PLACERS = ("round-robin", "eindecomp-greedy", "critical-path", "heft")
DEVICES = (1, 2, 3, 4)
RTOL = 1e-10

_cache: dict[str, tuple[Any, dict[str, Any], list[np.ndarray]]] = {}


def workload(name: str) -> tuple[Any, dict[str, Any], list[np.ndarray]]:
    """The tiny float64 workload, its feeds and the reference interpreter's outputs."""
    if name not in _cache:
        wl = get_workload(name, "tiny", "float64", **WORKLOADS[name])
        feeds = wl.make_feeds(0)
        _cache[name] = (wl, feeds, er.evaluate(wl.outputs, feeds))
    return _cache[name]


def partitioner_options(name: str, wl: Any) -> dict[str, Any]:
    """The chunks partitioner needs chunks: split the first input's leading dim in two."""
    if name != "chunks":
        return {}
    first = wl.graph().inputs[0]
    return {"chunks": {first.name: {0: max(1, first.shape[0] // 2)}}}


def assert_matches(got: list[np.ndarray], want: list[np.ndarray], names: list[str]) -> None:
    assert len(got) == len(want)
    for name, a, b in zip(names, got, want):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        scale = float(np.max(np.abs(b))) if b.size else 1.0
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * scale, err_msg=name)


@pytest.mark.parametrize("placer", PLACERS)
@pytest.mark.parametrize("partitioner", list(PARTITIONERS))
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_compiled_programs_match_the_reference(name: str, partitioner: str, placer: str) -> None:
    wl, feeds, want = workload(name)
    for ndev in DEVICES:
        prog = er.compile(
            wl.outputs,
            devices=er.cpu(ndev),
            partitioner=partitioner,
            placer=placer,
            **partitioner_options(partitioner, wl),
        )
        try:
            assert prog.plan.tasks.ndev == ndev
            assert prog.plan.partitioner == partitioner and prog.plan.placer == placer
            assert all(0 <= d < ndev for d in prog.plan.devices.values())
            got = prog.run(feeds)
            assert_matches(got, want, wl.output_names)
            rep = prog.report
            assert rep.wall_time_s > 0
            assert set(rep.peak_bytes) <= set(range(ndev)) and max(rep.peak_bytes.values()) > 0
            assert rep.bytes_moved == prog.plan.tasks.stats()["bytes_moved"]
            assert rep.bytes_offloaded == 0
            assert prog.simulate() > 0
        finally:
            prog.close()


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_report_explain_trace_and_simulate(name: str, tmp_path: Any) -> None:
    wl, feeds, want = workload(name)
    prog = er.compile(wl.outputs, devices=er.cpu(3))
    assert prog.report.wall_time_s == 0  # nothing ran yet
    buf = io.StringIO()
    prog.explain(Console(file=buf, width=200))  # explain before any run: the plan alone
    assert "partitions" in buf.getvalue() and "simulated makespan" in buf.getvalue()
    trace = tmp_path / "sub" / "trace.json"
    got = prog.run(feeds, trace=str(trace))
    assert_matches(got, want, wl.output_names)
    doc = json.loads(trace.read_text())
    spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == len(prog.plan.tasks.tasks)
    assert {e["pid"] for e in spans} <= set(range(3))
    png = tmp_path / "sub" / "trace.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rep = prog.report
    assert len(rep.events) == len(prog.plan.tasks.tasks)
    assert rep.busy_s and all(v >= 0 for v in rep.busy_s.values())
    assert "run:" in str(rep) and "plan:" in str(prog.plan)
    buf = io.StringIO()
    prog.explain(Console(file=buf, width=200))
    text = buf.getvalue()
    assert "measured" in text and "bytes moved between devices" in text
    for n in prog.plan.graph.nodes:
        assert n.name in text
    plan = prog.plan
    assert set(plan.partitions) == {n.name for n in plan.graph.nodes}
    assert plan.cost >= 0 and plan.compile_time_s > 0
    assert 0 < prog.simulate() < 60
    # a second run gives the same numbers and a fresh report
    again = prog.run(feeds)
    assert_matches(again, got, wl.output_names)
    assert prog.report.events == []  # not traced this time
    prog.close()


# ---------------------------------------------------------------------------------------------
# Bad input: a clear EinrelError at compile time
# ---------------------------------------------------------------------------------------------


def small_graph() -> tuple[er.Tensor, dict[str, np.ndarray]]:
    x = er.input("x", (12, 8), "float64")
    w = er.input("w", (8, 6), "float64")
    y = er.relu(x @ w).sum(1)
    rng = np.random.default_rng(0)
    return y, {"x": rng.standard_normal((12, 8)), "w": rng.standard_normal((8, 6))}


def test_partitions_that_do_not_fit_a_shape() -> None:
    y, _ = small_graph()
    with pytest.raises(er.CompileError, match=r"does not fit") as info:
        er.compile(
            y,
            devices=er.cpu(2),
            partitioner_options={"fixed": {"x": Partition.even((3, 3), (1, 1))}},
        )
    assert "x" in str(info.value)
    with pytest.raises(er.CompileError, match=r"add up to 12"):
        er.compile(y, devices=er.cpu(2), chunks={"x": {0: (5, 5)}})
    with pytest.raises(er.CompileError, match=r"block size must be >= 1"):
        er.compile(y, devices=er.cpu(2), chunks={"x": 0})
    with pytest.raises(er.CompileError, match=r"cannot cut a dimension of size 8 into 9"):
        Partition.even((12, 8), (1, 9))


@pytest.mark.parametrize("bad", [0, -1, -4])
def test_device_counts_below_one(bad: int) -> None:
    y, _ = small_graph()
    with pytest.raises(er.CompileError, match=r"device count must be an int >= 1"):
        er.compile(y, devices=er.cpu(bad))
    with pytest.raises(er.CompileError, match=r"devices must be"):
        er.compile(y, devices=bad)  # type: ignore[arg-type]


def test_unknown_partitioner_and_placer_names() -> None:
    y, _ = small_graph()
    with pytest.raises(er.CompileError, match=r"unknown partitioner 'eindecmop'.*eindecomp"):
        er.compile(y, devices=er.cpu(2), partitioner="eindecmop")
    with pytest.raises(er.CompileError, match=r"unknown placer 'critcal-path'.*critical-path"):
        er.compile(y, devices=er.cpu(2), placer="critcal-path")
    with pytest.raises(er.CompileError, match=r"unknown option 'sweeps'.*partitioner_options"):
        er.compile(y, devices=er.cpu(2), partitioner="data-parallel", sweeps=2)
    with pytest.raises(er.CompileError, match=r"'data-parallel' has no option\(s\) \['sweeps'\]"):
        er.compile(y, partitioner="data-parallel", partitioner_options={"sweeps": 2})
    with pytest.raises(
        er.CompileError, match=r"'search' has no option\(s\) \['budget'\].*budget_s"
    ):
        er.compile(y, placer="search", placer_options={"budget": 2})
    assert issubclass(er.CompileError, er.EinrelError)


# ---------------------------------------------------------------------------------------------
# A kernel failing inside a worker
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ndev", [1, 2, 4])
def test_failing_kernel_fails_the_run_and_the_program_runs_again(
    ndev: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    y, feeds = small_graph()
    prog = er.compile(y, devices=er.cpu(ndev), partitioner="largest-dim", placer="round-robin")
    want = er.evaluate([y], feeds)
    relu_tasks = [t for t in prog.plan.tasks.tasks if t.kind == "apply" and "max(" in str(t.op)]
    assert relu_tasks, "the graph has a relu block"
    node = prog.plan.graph[relu_tasks[0].node].name
    real = RULES["apply"]

    def failing(ops: Any, t: Any, *rest: Any) -> Any:
        if "max(" in str(t.op):
            raise FloatingPointError("injected failure in the relu kernel")
        return real(ops, t, *rest)

    threads = threading.active_count()
    monkeypatch.setitem(RULES, "apply", failing)
    with pytest.raises(er.EinrelError) as info:
        run_with_deadline(lambda: prog.run(feeds), 20)
    msg = str(info.value)
    assert isinstance(info.value, er.ExecutionError)
    assert f"of node {node} " in msg and "(apply)" in msg
    assert any(f"task t{t.id} " in msg for t in relu_tasks)
    assert "injected failure in the relu kernel" in msg
    assert isinstance(info.value.__cause__, FloatingPointError)
    kept = len(prog.engine.threads)  # one idle thread per slot, kept for the next run
    assert kept > 0 and threading.active_count() == threads + kept
    monkeypatch.setitem(RULES, "apply", real)
    got = run_with_deadline(lambda: prog.run(feeds), 20)
    np.testing.assert_allclose(got, want[0], rtol=RTOL)
    assert threading.active_count() == threads + kept  # the same threads ran it
    prog.close()
    assert threading.active_count() == threads  # every worker stopped


@pytest.mark.parametrize("memory", [None, "6KiB"])
def test_one_program_run_from_several_threads(memory: str | None) -> None:
    """Concurrent runs of one program (with and without a memory budget, whose arenas the
    runs share) each return their own feeds' results."""
    wl, _, _ = workload("ffnn_train")
    prog = er.compile(wl.outputs, devices=er.cpu(2, memory=memory))
    feeds = [wl.make_feeds(seed) for seed in range(4)]
    want = [er.evaluate(wl.outputs, f) for f in feeds]
    errors: list[str] = []

    def worker(k: int) -> None:
        for rep in range(6):
            i = (k + rep) % len(feeds)
            got = prog.run(feeds[i])
            for a, b in zip(got, want[i]):
                if not np.allclose(a, b, rtol=RTOL, atol=RTOL * float(np.max(np.abs(b)))):
                    errors.append(f"thread {k} run {rep} feeds {i}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a run hung"
    assert errors == []


def test_run_call_and_evaluate_return_alike() -> None:
    """One array for a single Tensor, a list for a sequence; a Program is callable."""
    x = er.input("x", (3, 2), "float64")
    y, z = x * 2.0, er.einsum("ij->", x)
    feeds = {"x": np.arange(6.0).reshape(3, 2)}
    single = er.compile(y, devices=er.cpu(2))
    many = er.compile([y, z], devices=er.cpu(2))
    for got in (single.run(feeds), single(feeds), er.evaluate(y, feeds)):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, feeds["x"] * 2)
    for got in (many.run(feeds), many(feeds), er.evaluate([y, z], feeds)):
        assert isinstance(got, list) and len(got) == 2
        np.testing.assert_array_equal(got[1], 15.0)
    single.close()
    many.close()


def test_reprs_say_what_a_program_and_its_plan_are() -> None:
    x = er.input("x", (4, 4), "float32")
    prog = er.compile(er.einsum("ij,jk->ik", x, x), devices=er.cpu(2))
    assert re.fullmatch(
        r"Program\(outputs=\['%1'\], devices=cpu\(2\), 2 nodes, \d+ tasks, engine=LocalEngine\)",
        repr(prog),
    )
    assert re.fullmatch(
        r"Plan\(2 nodes -> \d+ tasks on 2 device\(s\), partitioner=eindecomp, "
        r"placer=critical-path, memory plan=no\)",
        repr(prog.plan),
    )
    assert repr(prog.report) == "Report(no run yet)"
    prog({"x": np.eye(4, dtype=np.float32)})
    assert re.search(r"last run \d+\.\d ms\)$", repr(prog))
    assert re.fullmatch(
        r"Report\(run: [\d.]+ ms; peak \{.*\}; moved .* MiB; offloaded .*\)", repr(prog.report)
    )
    prog.close()


def test_feeds_strict_cast_and_torch_in_and_out() -> None:
    x = er.input("x", (2, 3), "float32")
    b = er.input("b", (3,), "bfloat16")
    y = x * er.var("s") + b.astype("float32")
    prog = er.compile(y, devices=er.cpu(2))
    xs = np.arange(6.0).reshape(2, 3)
    bs = torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16)
    want = xs * 2 + np.array([1.0, 2.0, 3.0])
    feeds = {"x": xs.astype(np.float32), "b": bs, "s": torch.tensor(2.0)}  # 0-d tensor: a var
    for run in (prog.run, lambda f, **k: er.evaluate(y, f, **k)):
        np.testing.assert_array_equal(run(feeds), want)
        with pytest.raises(er.FeedError, match=r"\['lr'\], which the graph does not use"):
            run({**feeds, "lr": 0.1})
        np.testing.assert_array_equal(run({**feeds, "lr": 0.1}, strict=False), want)
        with pytest.raises(er.FeedError, match=r"dtype float64, the input is float32.*cast=True"):
            run({**feeds, "x": xs})
        grad_tensor = torch.from_numpy(xs).requires_grad_()  # float64, requires grad
        np.testing.assert_array_equal(run({**feeds, "x": grad_tensor}, cast=True), want)
        with pytest.raises(er.FeedError, match=r"is torch\.bfloat16, the input is float32"):
            run({**feeds, "x": torch.from_numpy(xs).to(torch.bfloat16)})
        out = run(feeds, output="torch")
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        np.testing.assert_array_equal(out.numpy(), want)
        with pytest.raises(er.FeedError, match='output must be "numpy" or "torch"'):
            run(feeds, output="jax")
    prog.close()


def test_explain_shows_partitions_with_a_legend_and_no_run_figures_before_a_run() -> None:
    from einrel.explain import wide_console

    x = er.input("x", (64, 64), "float32")
    prog = er.compile(er.relu(x @ x), devices=er.cpu(2), partitioner="largest-dim")
    assert re.search(r"\bm×\d n×\d k×\d\b", str(prog.plan))
    before = io.StringIO()
    prog.explain(Console(file=before, width=200))
    text = before.getvalue()
    assert "d0×" in text and "parts: i×2 = einsum label i cut into 2 blocks" in text
    assert "busy ms" not in text and "last run" not in text and "measured" not in text
    prog({"x": np.eye(64, dtype=np.float32)})
    after = io.StringIO()
    prog.explain(Console(file=after, width=200))
    assert "busy ms" in after.getvalue() and "(last run)" in after.getvalue()
    assert wide_console().width == 160  # pytest captures stdout: not a terminal
    prog.close()


def test_user_names_reach_plans_and_trace_events(tmp_path: Any) -> None:
    """name= and .named() name graph nodes (kept unique, kept through fusion); trace events
    show the name and the einsum spec."""
    x = er.input("x", (8, 8), "float64")
    h = er.einsum("ij,jk->ik", x, x, name="hidden")
    y = er.relu(h).named("act")
    z = er.einsum("ij->i", y, name="x")  # clashes with the input's name: made unique
    prog = er.compile(z, devices=er.cpu(2))
    assert [n.name for n in prog.plan.graph.nodes] == ["x", "hidden", "x%2"]  # act fused
    unfused = er.compile(z, devices=er.cpu(2), fuse=False)
    assert [n.name for n in unfused.plan.graph.nodes] == ["x", "hidden", "act", "x%3"]
    unfused.close()
    assert "hidden" in prog.plan.partitions and "hidden" in str(prog.plan)
    feeds = {"x": np.eye(8)}
    prog.run(feeds, trace=str(tmp_path / "t.json"))
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    spans = {e["name"]: e["args"] for e in events if e["ph"] == "X"}
    assert "apply hidden [ij,jk->ik]" in spans and "input x" in spans
    assert spans["apply hidden [ij,jk->ik]"]["einsum"].startswith("einsum[ij,jk->ik")
    np.testing.assert_array_equal(prog(feeds), np.ones(8))
    prog.close()
    for bad in ("", "a%1", 3):
        with pytest.raises(er.EinrelError, match="tensor name must be a non-empty string"):
            x.named(bad)  # type: ignore[arg-type]


def _dot_nodes(text: str) -> tuple[list[str], int]:
    """The node ids and edge count of DOT text, parsed by pydot (so the syntax is checked)."""
    import warnings

    with warnings.catch_warnings():  # pydot calls pyparsing's deprecated camelCase names
        warnings.simplefilter("ignore", DeprecationWarning)
        import pydot

        (g,) = pydot.graph_from_dot_data(text)
    graphs = [g, *g.get_subgraphs()]
    nodes = [n.get_name() for s in graphs for n in s.get_nodes()]
    return [n for n in nodes if n not in ("node", "edge", "graph")], len(g.get_edges())


def test_graphs_and_plans_as_dot(tmp_path: Any) -> None:
    x = er.input("x", (8, 8), "float64")
    loss = (er.relu(er.einsum("ij,jk->ik", x, x, name="hidden")) ** 2).sum()
    prog = er.compile([loss, *er.grad(loss, [x])], devices=er.cpu(2))
    graph, tasks = prog.plan.graph, prog.plan.tasks
    nodes, edges = _dot_nodes(graph.to_dot())
    assert len(nodes) == len(graph) and edges == sum(len(n.inputs) for n in graph.nodes)
    assert 'label="hidden\\nij,jk->ik\\nf64[8,8]"' in graph.to_dot()
    nodes, edges = _dot_nodes(prog.plan.to_dot())
    assert sorted(nodes) == sorted(f"t{t.id}" for t in tasks.tasks)
    assert edges == sum(len(set(t.inputs)) for t in tasks.tasks)
    assert prog.plan.to_dot().count("subgraph cluster_d") == 2
    nodes, _ = _dot_nodes(prog.plan.to_dot("nodes"))
    assert len(nodes) == len(graph) and prog.plan.parts_text("hidden") in prog.plan.to_dot("nodes")
    assert prog.plan.render(tmp_path / "p.dot").read_text() == prog.plan.to_dot()
    with pytest.raises(er.EinrelError, match='level must be "tasks" or "nodes"'):
        prog.plan.to_dot("blocks")
    prog.close()


@pytest.mark.parametrize("memory", [None, "64KiB"])
def test_run_writes_outputs_into_given_arrays(memory: str | None) -> None:
    """`out=` as numpy's: the results land in the given arrays (None: a new one), on the
    local engine (kernels write there) and the memory engine (copied there)."""
    x = er.input("x", (64, 32))
    y, s = er.relu(x) * 2.0, er.sum(x * x)
    prog = er.compile([y, s], devices=er.cpu(2, memory=memory), progress=False)
    xv = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    want = prog({"x": xv})
    into = np.full((64, 32), np.nan, np.float32)
    got_y, got_s = prog({"x": xv}, out=[into, None])
    assert got_y is into
    np.testing.assert_allclose(into, want[0])
    np.testing.assert_allclose(got_s, want[1], rtol=1e-6)
    bad = {
        "count": ([into, None, None], "3 arrays for 2 outputs"),
        "shape": ([np.empty((32, 64), np.float32), None], "has shape"),
        "dtype": ([np.empty((64, 32)), None], "has dtype"),
        "layout": ([np.empty((32, 64), np.float32).T, None], "C-contiguous"),
        "aliasing": ([xv, None], "shares memory with a feed"),
    }
    for arrays, match in bad.values():
        with pytest.raises(er.EinrelError, match=match):
            prog({"x": xv}, out=arrays)
    prog.close()


def test_run_refuses_a_relation_output_given_an_array() -> None:
    A = er.relation("A", keys={"u": 8, "v": 8}, nnz=10)
    S = er.einsum("uv,u->uv", A, er.input("h", (8,)))
    prog = er.compile(S, devices=er.cpu(1), progress=False)
    feeds = {"A": er.coo(np.array([[0, 1], [2, 3]])), "h": np.ones(8, np.float32)}
    with pytest.raises(er.EinrelError, match="relation output"):
        prog(feeds, out=[np.empty(2, np.float32)])
    prog.close()
