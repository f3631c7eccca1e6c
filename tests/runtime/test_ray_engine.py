"""The Ray engine on a local Ray cluster: the same plans as the local engine, run by one pinned
actor per device, with blocks moving actor to actor through the object store.

Ray starts once for this module (8 logical CPUs, so a 4-device engine and a 2-device program
fit at once) and shuts down at the end. Graphs are small and float64; results must match the
whole-tensor reference interpreter to the same tolerance as the local engine's differential
test, bytes moved must equal the plan's modelled bytes, and faults (a kernel that raises, an
actor killed mid-run) must surface as ExecutionError naming the device and the task, promptly,
with the next run succeeding.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

import einrel as er
from einrel.decompose.partition import Partition
from einrel.frontend.reference import bind_feeds, interpret
from einrel.ir.graph import Graph
from einrel.runtime.ray.plan import modelled_bytes, split_plan
from einrel.taskgraph.build import build_tasks
from einrel.taskgraph.interpret import assemble_outputs, run_task
from einrel.taskgraph.ir import Task, TaskGraph
from einrel.taskgraph.place import place_tasks
from einrel.testing.events import check_events, peak_from_events

ray = pytest.importorskip("ray")

from einrel.runtime.ray.engine import RayEngine  # noqa: E402
from helpers import local_ray, run_with_deadline  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]

RTOL = 1e-12


@pytest.fixture(scope="module")
def cluster() -> Any:
    with local_ray(8) as r:
        yield r


def steerable_kernel() -> Any:
    """A kernel steered by run-time variables: `fail_task` raises at that task id, `sleep_s`
    slows every compute task down. Defined in a closure so that Ray ships it by value."""
    control = ("fail_task", "sleep_s")

    def kernel(
        t: Task,
        args: Sequence[np.ndarray],
        inputs: Mapping[int, np.ndarray],
        v: Mapping[str, float],
    ) -> np.ndarray:
        if v.get("fail_task", -1) == t.id:
            raise ValueError("injected kernel failure")
        if v.get("sleep_s", 0.0) and t.kind != "move":
            time.sleep(v["sleep_s"])
        return run_task(t, args, inputs, {k: x for k, x in v.items() if k not in control})

    return kernel


@pytest.fixture(scope="module")
def engine(cluster: Any) -> Any:
    eng = RayEngine(4, runner=steerable_kernel(), poll_s=0.05)
    yield eng
    eng.close()


def close(got: np.ndarray, want: np.ndarray) -> None:
    scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale)


def random_program(rng: np.random.Generator) -> tuple[Graph, dict[str, np.ndarray]]:
    """A short random chain of einsum / relu / softmax / matmul / elementwise ops on small
    float64 matrices, with one or two outputs."""
    m, k, n = (int(s) for s in rng.integers(3, 9, size=3))
    feeds: dict[str, np.ndarray] = {}

    def new_input(shape: tuple[int, ...]) -> er.Tensor:
        name = f"in{len(feeds)}"
        feeds[name] = rng.standard_normal(shape)
        return er.input(name, shape, "float64")

    pool = [new_input((m, k))]
    for _ in range(int(rng.integers(2, 6))):
        a = pool[int(rng.integers(len(pool)))]
        r, c = a.shape
        op = rng.choice(["matmul", "relu", "softmax", "einsum", "dist", "add", "sum"])
        if op == "matmul":
            y = er.matmul(a, new_input((c, int(rng.choice([k, n])))))
        elif op == "relu":
            y = er.relu(a)
        elif op == "softmax":
            y = er.softmax(a, axis=int(rng.integers(2)))
        elif op == "einsum":
            y = er.einsum("ij,ij->ij", a, new_input((r, c)), join=lambda p, q: p * q - q, agg=None)
        elif op == "dist":
            y = er.einsum("ik,jk->ij", a, new_input((n, c)), join=lambda p, q: (p - q) ** 2)
        elif op == "add":
            y = a + new_input((r, c))
        else:
            y = er.einsum("ij->j", a).reshape(1, c)
        pool.append(y)
    outs = [pool[-1]] + ([pool[len(pool) // 2]] if len(pool) > 2 and rng.random() < 0.5 else [])
    graph = er.build_graph(outs)
    used = {nd.name for nd in graph.inputs}
    return graph, {name: v for name, v in feeds.items() if name in used}


def random_placed(graph: Graph, rng: np.random.Generator, ndev: int) -> TaskGraph:
    dec = {}
    for nd in graph.nodes:
        shape = nd.einsum.join_shape if nd.op == "einsum" else nd.shape
        dec[nd.id] = Partition.even(shape, [int(rng.integers(1, min(3, s) + 1)) for s in shape])
    tg = build_tasks(graph, dec)
    return place_tasks(tg, [int(rng.integers(ndev)) for _ in tg.tasks], ndev)


def moved_bytes(tg: TaskGraph) -> int:
    return sum(t.nbytes for t in tg.tasks if t.kind == "move")


def test_importing_einrel_does_not_import_ray() -> None:
    code = "import sys, einrel; import einrel.runtime; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_random_graphs_match_the_reference(engine: Any) -> None:
    rng = np.random.default_rng(7)
    moved_any = False
    for _ in range(10):
        graph, feeds = random_program(rng)
        ndev = int(rng.integers(2, 5))
        tg = random_placed(graph, rng, ndev)
        want = interpret(graph, feeds)
        inputs, variables = bind_feeds(graph, feeds)
        res = engine.run(tg, inputs, variables, trace=True)
        for g, w in zip(assemble_outputs(tg, res.values), want):
            close(g, w)
        assert res.bytes_moved == moved_bytes(tg)
        moved_any |= res.bytes_moved > 0
        check_events(tg, res.events, 1, None)
        # A block read by another device stays counted until its copy has landed there, so
        # the engine's peak is at least the peak of the log's own intervals.
        peak = peak_from_events(tg, res.events)
        assert set(res.peak_bytes) == set(range(engine.ndev))
        for d, b in res.peak_bytes.items():
            assert peak.get(d, 0) <= b <= sum(t.nbytes for t in tg.tasks if t.device == d)
    assert moved_any


def test_plan_is_shipped_once_and_runs_repeat(engine: Any) -> None:
    graph, feeds = random_program(np.random.default_rng(3))
    tg = random_placed(graph, np.random.default_rng(4), 3)
    inputs, variables = bind_feeds(graph, feeds)
    first = engine.run(tg, inputs, variables)
    key = engine.plan(tg)[0]
    assert all(key in ray.get(a.plans.remote()) for a in engine.actors)
    for _ in range(2):
        again = engine.run(tg, inputs, variables)
        for t, v in first.values.items():
            np.testing.assert_array_equal(again.values[t], v)
    assert engine.plan(tg)[0] == key


def test_split_plan_accounts_every_move() -> None:
    graph, _ = random_program(np.random.default_rng(11))
    tg = random_placed(graph, np.random.default_rng(12), 3)
    from einrel.runtime.core import make_task_schedule

    parts = split_plan(tg, make_task_schedule(tg, 4, "given"))
    assert len(parts) == 4 and not parts[3].tasks
    assert sorted(g for p in parts for g in p.gids) == list(range(len(tg.tasks)))
    assert modelled_bytes(parts) == moved_bytes(tg)


def test_compiled_program_on_ray(cluster: Any) -> None:
    x = er.input("x", (48, 32), "float64")
    w = er.input("w", (32, 40), "float64")
    h = er.relu(er.einsum("bi,io->bo", x, w))
    loss = er.einsum("bo->", er.softmax(h, axis=-1) * h)
    (gw,) = er.grad(loss, [w])
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((48, 32)), "w": rng.standard_normal((32, 40))}
    want = er.evaluate([loss, gw], feeds)
    split = er.partitioners.EinDecomp(small_join=0)  # blocks to move, however small
    prog = er.compile([loss, gw], devices=er.ray(2), partitioner=split, placer="round-robin")
    try:
        for _ in range(2):
            got = prog.run(feeds)
            for g, v in zip(got, want):
                close(g, v)
        assert prog.report.bytes_moved == moved_bytes(prog.plan.tasks) > 0
        assert set(prog.report.peak_bytes) == {0, 1}
        assert prog.report.wall_time_s > 0
    finally:
        prog.close()


def test_relation_programs_on_ray_match_the_reference(cluster: Any) -> None:
    """Relation blocks (cut by key ranges, repartitioned, moved between actors) on er.ray:
    values, gradients and relation outputs as the reference has them, run after run."""
    from test_relations import model  # the relations test's GNN-style model with gradients

    outs, feeds = model()
    want = er.evaluate(outs, feeds)
    for partitioner in (er.partitioners.EinDecomp(small_join=0), "data-parallel"):
        prog = er.compile(outs, devices=er.ray(2), partitioner=partitioner, placer="round-robin")
        try:
            for _ in range(2):
                for g, v in zip(prog.run(feeds), want):
                    if isinstance(v, er.Coo):
                        assert np.array_equal(g.indices, v.indices)
                        g, v = g.values, v.values
                    close(g, v)
            assert prog.report.bytes_moved > 0
        finally:
            prog.close()


def test_gcn_trains_to_the_same_weights_on_ray(cluster: Any) -> None:
    from einrel.workloads import gcn, graphs

    d = graphs.sbm(500, 4000, classes=3, features=8, train_per_class=10, seed=3)
    runs = [
        gcn.train(d, 3, hidden=8, devices=dev, progress=False) for dev in (er.cpu(2), er.ray(2))
    ]
    for k in gcn.PARAMS:
        np.testing.assert_allclose(runs[1].params[k], runs[0].params[k], rtol=1e-5, atol=1e-7)


def test_recommendation_trains_to_the_same_embeddings_on_ray(cluster: Any) -> None:
    from einrel.workloads import interactions
    from einrel.workloads import recommend as rec

    d = interactions.power_law(200, 80, 3000, seed=1)
    cfg = rec.RecConfig(dim=8, batch=256, negatives=4, loss="simce", layers=1, lr=1e-2)
    runs = [rec.train(d, cfg, 2, devices=dev, progress=False) for dev in (er.cpu(2), er.ray(2))]
    for k in ("P", "Q"):
        np.testing.assert_allclose(runs[1].params[k], runs[0].params[k], rtol=1e-5, atol=1e-7)


def test_knowledge_graph_embeddings_train_the_same_on_ray(cluster: Any) -> None:
    from einrel.workloads import kge, triples

    d = triples.synthetic(300, 6, 4000, groups=8, seed=1)
    cfg = kge.KGEConfig(model="transe", dim=8, batch=512, negatives=2)
    runs = [
        kge.train(d, cfg, 2, dev, progress=False, eval_limit=20) for dev in (er.cpu(2), er.ray(2))
    ]
    for k in ("E", "R"):
        np.testing.assert_allclose(runs[1].params[k], runs[0].params[k], rtol=1e-5, atol=1e-7)


def test_label_hashing_trains_the_same_on_ray(cluster: Any) -> None:
    from einrel.workloads import labels, xc

    d = labels.synthetic(1500, 300, 1024, seed=1)
    cfg = xc.XCConfig(hashes=2, buckets=32, hidden=8, batch=256, lr=1e-2)
    runs = [
        xc.train(d, cfg, 2, dev, progress=False, eval_limit=50) for dev in (er.cpu(2), er.ray(2))
    ]
    for k in xc.PARAMS:
        np.testing.assert_allclose(runs[1].params[k], runs[0].params[k], rtol=1e-5, atol=1e-7)
    assert runs[1].metrics == runs[0].metrics


def test_memory_budget_is_reserved_per_actor(cluster: Any) -> None:
    graph, feeds = random_program(np.random.default_rng(13))
    tg = random_placed(graph, np.random.default_rng(14), 2)
    eng = RayEngine(er.ray(2, memory="64MiB"))
    try:
        res = eng.run(tg, *bind_feeds(graph, feeds))
        for g, w in zip(assemble_outputs(tg, res.values), interpret(graph, feeds)):
            close(g, w)
    finally:
        eng.close()


def test_ray_demo_passes(cluster: Any) -> None:
    from rich.console import Console

    from einrel.demos.ray import ray_demo

    out = io.StringIO()
    code = ray_demo("tiny", devices=2, runs=1, console=Console(file=out, width=120))
    assert code == 0, out.getvalue()
    assert "PASS" in out.getvalue()


def test_kernel_failure_names_device_and_task_and_next_run_works(engine: Any) -> None:
    graph, feeds = random_program(np.random.default_rng(5))
    tg = random_placed(graph, np.random.default_rng(6), 4)
    inputs, variables = bind_feeds(graph, feeds)
    bad = next(t for t in reversed(tg.tasks) if t.kind == "apply")
    with pytest.raises(er.ExecutionError, match=rf"task t{bad.id} \(apply\).*device {bad.device}"):
        run_with_deadline(lambda: engine.run(tg, inputs, {**variables, "fail_task": bad.id}), 20)
    res = engine.run(tg, inputs, variables)
    for g, w in zip(assemble_outputs(tg, res.values), interpret(graph, feeds)):
        close(g, w)


def test_killed_actor_is_reported_and_replaced(engine: Any) -> None:
    graph, feeds = random_program(np.random.default_rng(8))
    tg = random_placed(graph, np.random.default_rng(9), 4)
    inputs, variables = bind_feeds(graph, feeds)
    victim = 1
    assert any(t.device == victim and t.kind != "move" for t in tg.tasks)
    old = engine.actors[victim]
    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            engine.run(tg, inputs, {**variables, "sleep_s": 0.05})
        except BaseException as exc:
            box["exc"] = exc

    th = threading.Thread(target=run, daemon=True)
    th.start()
    # Kill it once it is running a task (status polls run every 50 ms).
    deadline = time.perf_counter() + 20
    while time.perf_counter() < deadline:
        st = ray.get(old.status.remote())
        if st["running"]:
            break
        time.sleep(0.02)
    ray.kill(old)
    th.join(30)
    assert not th.is_alive(), "run() hung after an actor died"
    exc = box.get("exc")
    assert isinstance(exc, er.ExecutionError), exc
    msg = str(exc)
    assert f"device {victim}" in msg and "died" in msg
    # It names the task it was running or about to run (from its last status report).
    assert re.search(r"died while (running|waiting for the inputs of) task t\d+ \(", msg), msg
    # The next run replaces the dead actor on its node and succeeds.
    res = engine.run(tg, inputs, variables)
    assert engine.actors[victim] is not old
    for g, w in zip(assemble_outputs(tg, res.values), interpret(graph, feeds)):
        close(g, w)
    assert res.bytes_moved == moved_bytes(tg)


def test_run_timeout_aborts_and_names_running_tasks(engine: Any) -> None:
    graph, feeds = random_program(np.random.default_rng(8))
    tg = random_placed(graph, np.random.default_rng(9), 4)
    inputs, variables = bind_feeds(graph, feeds)
    engine.run_timeout_s = 0.3
    try:
        with pytest.raises(er.ExecutionError, match="exceeded run_timeout_s"):
            run_with_deadline(lambda: engine.run(tg, inputs, {**variables, "sleep_s": 0.1}), 15)
    finally:
        engine.run_timeout_s = None
    res = engine.run(tg, inputs, variables)
    for g, w in zip(assemble_outputs(tg, res.values), interpret(graph, feeds)):
        close(g, w)


def test_cluster_without_the_resources_is_a_compile_error(cluster: Any) -> None:
    x = er.input("x", (8, 8))
    with pytest.raises(er.CompileError, match="lacks the resources"):
        er.compile([er.relu(x)], devices=er.ray(64))
    # The memory a device reserves (checked by the engine, whatever the memory planner says).
    with pytest.raises(er.CompileError, match="lacks the resources"):
        RayEngine(er.ray(2, memory="64TiB"))


def test_unreachable_cluster_is_a_compile_error() -> None:
    code = (
        "import einrel as er\n"
        "x = er.input('x', (4, 4))\n"
        "try:\n"
        "    er.compile([er.relu(x)], devices=er.ray(2, address='127.0.0.1:1'))\n"
        "except er.CompileError as e:\n"
        "    assert 'cannot reach the Ray cluster' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
