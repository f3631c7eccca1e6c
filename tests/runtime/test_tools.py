"""Cost model (durations, JSON, calibration) and timeline output (Chrome trace, Gantt PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import einrel as er
from einrel.decompose.partition import Partition
from einrel.runtime import CostModel, SimEngine, calibrate_and_save, default_path
from einrel.runtime.trace import chrome_trace, write_chrome_trace, write_gantt
from einrel.taskgraph.build import build_tasks
from einrel.taskgraph.ir import TaskGraph
from einrel.taskgraph.place import place_tasks


def matmul_tg(n: int, parts: int, ndev: int) -> TaskGraph:
    a = er.input("a", (n, n))
    b = er.input("b", (n, n))
    g = er.build_graph([er.relu(a @ b)])
    dec = {}
    for nd in g.nodes:
        shape = nd.einsum.join_shape if nd.op == "einsum" else nd.shape
        dec[nd.id] = Partition.even(shape, [parts] * len(shape))
    tg = build_tasks(g, dec)
    return place_tasks(tg, [t.id % ndev for t in tg.tasks], ndev)


def test_durations_follow_kernel_kinds() -> None:
    cm = CostModel.default()
    small, big = matmul_tg(64, 2, 2), matmul_tg(128, 2, 2)

    def first(tg: TaskGraph, kind: str) -> float:
        return cm.task_seconds(next(t for t in tg.tasks if t.kind == kind))

    for kind in ("apply", "agg", "move", "input"):
        floor = cm.link_latency_s if kind == "move" else cm.task_overhead_s
        assert floor < first(small, kind) < first(big, kind)
    gemm = next(t for t in big.tasks if t.kind == "apply" and t.op.is_contraction)
    assert cm.task_seconds(gemm) == pytest.approx(
        cm.task_overhead_s + gemm.op.flops() / cm.contraction_flops_per_s
    )
    move = next(t for t in big.tasks if t.kind == "move")
    assert cm.task_seconds(move) == cm.link_latency_s + move.nbytes / cm.link_bytes_per_s


def test_json_round_trip_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cm = CostModel.default().with_(task_overhead_s=3e-5, ndev=4)
    path = cm.save(tmp_path / "a" / "cal.json")
    assert CostModel.load(path) == cm
    assert json.loads(path.read_text())["meta"]["cores"] >= 1
    monkeypatch.setenv("EINREL_CALIBRATION", str(tmp_path / "env.json"))
    assert default_path() == tmp_path / "env.json"
    with pytest.raises(er.CompileError, match=r"cannot read .*env.json.*einrel calibrate"):
        CostModel.resolve("calibrated")  # nothing saved there yet
    cm.save()
    assert CostModel.resolve("calibrated") == cm
    assert CostModel.resolve(path) == cm
    assert CostModel.resolve(None) == CostModel.default()
    with pytest.raises(ValueError, match="positive"):
        cm.with_(link_bytes_per_s=0.0)
    with pytest.raises(ValueError, match="unknown"):
        CostModel.from_dict({**cm.to_dict(), "gpu_flops": 1.0})


def test_calibration_measures_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EINREL_CALIBRATION", str(tmp_path / "cal.json"))
    cm = calibrate_and_save(ndev=2)
    assert CostModel.load() == cm
    # sane orders of magnitude for any CPU of the last decade
    assert 1e9 < cm.contraction_flops_per_s < 1e13
    assert 1e7 < cm.elementwise_elems_per_s < 1e11
    assert 1e8 < cm.copy_bytes_per_s < 1e12
    assert 1e-7 < cm.task_overhead_s < 1e-2
    assert cm.contraction_flops_per_s > cm.elementwise_elems_per_s  # BLAS beats ufunc loops


def test_chrome_trace_and_gantt(tmp_path: Path) -> None:
    tg = matmul_tg(32, 2, 2)
    res = SimEngine(2).simulate(tg)
    doc = chrome_trace(res.events, tg)
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert len(xs) == len(tg.tasks)
    names = {e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"}
    assert names == {"device 0", "device 1"}
    for e, (t, d, _, start, end) in zip(xs, res.events):
        assert e["pid"] == d and e["args"]["task"] == t
        assert e["ts"] == pytest.approx(start * 1e6) and e["dur"] == pytest.approx(
            (end - start) * 1e6
        )
        assert e["name"].startswith(tg.tasks[t].kind)
    path = write_chrome_trace(res.events, tmp_path / "t.json", tg)
    assert json.loads(path.read_text()) == json.loads(json.dumps(doc))
    png = write_gantt(res.events, tmp_path / "g.png", tg)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compile_reads_no_cost_model_it_was_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A saved calibration changes nothing unless named: the default is the built-in model;
    "calibrated" or a path reads it; a bad file is a CompileError naming it."""
    slow = CostModel.default().with_(contraction_flops_per_s=1e3, task_overhead_s=1.0)
    monkeypatch.setenv("EINREL_CALIBRATION", str(tmp_path / "cal.json"))
    slow.save()
    x = er.input("x", (8, 8))
    prog = er.compile([er.relu(x @ x)], devices=er.cpu(2))
    assert prog.cost_model == CostModel.default()
    assert er.compile([x @ x], cost_model="calibrated").cost_model == slow
    assert er.compile([x @ x], cost_model=tmp_path / "cal.json").cost_model == slow
    assert er.compile([x @ x], cost_model=slow).cost_model == slow
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(er.CompileError, match=r"bad.json is not a saved cost model"):
        er.compile([x @ x], cost_model=str(tmp_path / "bad.json"))
    with pytest.raises(er.CompileError, match=r"cost_model must be"):
        er.compile([x @ x], cost_model=3)
