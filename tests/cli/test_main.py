"""The command line: demo (pipeline and gradient check), plan and calibrate, and their errors:
usage errors exit with status 2, errors einrel raises with one `error:` line and status 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from einrel.cli.main import app
from einrel.demos import demo as demo_mod
from einrel.errors import CompileError
from einrel.runtime import CostModel

runner = CliRunner(env={"COLUMNS": "200"})  # rich wraps at 80 columns otherwise


def test_demo_pipeline_passes_and_writes_its_files(tmp_path: Path) -> None:
    trace = tmp_path / "out" / "demo_trace.json"
    res = runner.invoke(
        app, ["demo", "--size", "tiny", "--devices", "2", "--runs", "1", "--trace", str(trace)]
    )
    assert res.exit_code == 0, res.output
    out = res.output
    assert "PASS" in out and "FAIL" not in out
    assert "vs the reference interpreter" in out and "vs torch.autograd" in out
    assert "partitions (eindecomp)" in out  # explain()
    assert "speed relative to torch" in out
    assert json.loads(trace.read_text())["traceEvents"]
    assert trace.with_suffix(".png").stat().st_size > 0


def test_demo_fails_loudly_on_a_wrong_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_mod, "SUM_ERROR_FACTOR", 0.0)  # no room for split sums
    args = ["--size", "tiny", "--runs", "1", "--trace", "", "--partitioner", "largest-dim"]
    res = runner.invoke(app, ["demo", *args])
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output


@pytest.mark.parametrize(
    "workload", ["gcn", *(pytest.param(w, marks=pytest.mark.slow) for w in ("mf", "kge", "xc"))]
)
def test_relational_demo_checks_gradients_trains_and_draws(workload: str, tmp_path: Path) -> None:
    trace = tmp_path / "out" / "demo_trace.json"
    res = runner.invoke(app, ["demo", "--workload", workload, "-n", "2", "--trace", str(trace)])
    assert res.exit_code == 0, res.output
    assert "vs torch autograd (float64)" in res.output and "PASSED" in res.output
    assert (tmp_path / "out" / f"{workload}_curves.png").stat().st_size > 0


def test_relational_demo_fails_loudly_and_refuses_unknown_workloads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from einrel.demos import relational

    monkeypatch.setattr(relational, "TOLERANCE", 0.0)
    trace = str(tmp_path / "demo_trace.json")
    res = runner.invoke(app, ["demo", "--workload", "gcn", "--trace", trace])
    assert res.exit_code == 1 and "FAILED" in res.output
    res = runner.invoke(app, ["demo", "--workload", "nope"])
    assert res.exit_code == 2 and "--workload" in res.output


def test_demo_other_partitioner_placer_and_dtype(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "demo",
            "--size",
            "tiny",
            "--devices",
            "3",
            "--partitioner",
            "largest-dim",
            "--placer",
            "heft",
            "--dtype",
            "float64",
            "--runs",
            "1",
            "--trace",
            str(tmp_path / "t.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "partitions (largest-dim)" in res.output


def test_demo_check_grads() -> None:
    res = runner.invoke(app, ["demo", "--check-grads", "--size", "tiny"])
    assert res.exit_code == 0, res.output
    assert res.output.count("PASS") == 2  # reference interpreter and compiled pipeline
    assert "float64" in res.output


def test_demo_gradient_check_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(demo_mod.TOLERANCE, "float32", 0.0)
    res = runner.invoke(app, ["demo", "--check-grads", "--size", "tiny", "--dtype", "float32"])
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--size", "huge"], "--size"),
        (["--dtype", "int8"], "--dtype"),
        (["--devices", "0"], "--devices"),
        (["--partitioner", "nope"], "--partitioner"),
        (["--placer", "nope"], "--placer"),
    ],
)
def test_demo_bad_options(args: list[str], hint: str) -> None:
    res = runner.invoke(app, ["demo", *args])
    assert res.exit_code == 2
    assert hint in res.output and "Usage: einrel demo" in res.stderr


def test_demo_reports_einrel_errors_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> int:
        raise CompileError("no plan fits")

    monkeypatch.setattr(demo_mod, "demo", fail)
    res = runner.invoke(app, ["demo", "--size", "tiny", "--runs", "1", "--trace", ""])
    assert res.exit_code == 1
    assert res.stderr == "error: no plan fits\n" and "Traceback" not in res.output


def test_python_m_einrel_demo(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "einrel", "demo", "--size", "tiny", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout
    assert (tmp_path / "out" / "demo_trace.json").is_file()
    assert (tmp_path / "out" / "demo_trace.png").is_file()


@pytest.mark.parametrize("workload", ["matmul_chain", "ffnn_train", "llama_block"])
def test_plan_prints_plan_and_explain(workload: str) -> None:
    res = runner.invoke(
        app, ["plan", workload, "--devices", "3", "--size", "tiny", "--placer", "heft"]
    )
    assert res.exit_code == 0, res.output
    assert "plan:" in res.output and "on 3 device(s)" in res.output
    assert "partitions (eindecomp)" in res.output and "simulated makespan" in res.output
    assert "measured" not in res.output  # nothing ran


def test_plan_options_and_errors() -> None:
    res = runner.invoke(
        app,
        ["plan", "llama_block", "--size", "tiny", "--mode", "train", "--partitioner", "none"],
    )
    assert res.exit_code == 0, res.output
    assert "partitioner=none" in res.output
    for args, hint in [
        (["resnet"], "WORKLOAD"),
        (["ffnn_train", "--size", "huge"], "--size"),
        (["ffnn_train", "--devices", "0"], "--devices"),
        (["ffnn_train", "-n", "0"], "--devices"),
        (["ffnn_train", "--dtype", "int8"], "--dtype"),
        (["ffnn_train", "--mode", "train"], "--mode"),  # llama_block only
        (["llama_block", "--size", "tiny", "--mode", "serve"], "--mode"),
        (["ffnn_train", "--partitioner", "nope"], "--partitioner"),
        (["ffnn_train", "--placer", "nope"], "--placer"),
    ]:
        res = runner.invoke(app, ["plan", *args])
        assert res.exit_code == 2, (args, res.output)
        assert hint in res.stderr and "Usage: einrel plan" in res.stderr
    # a cost model that cannot be read is einrel's error, not a usage error
    res = runner.invoke(app, ["plan", "ffnn_train", "--cost-model", "calibrated"])
    assert res.exit_code == 1
    assert res.stderr.startswith("error: cost_model: cannot read")
    assert "einrel calibrate" in res.stderr
    assert res.stderr.count("\n") == 1 and res.stdout == ""


def test_calibrate_writes_a_cost_model(tmp_path: Path) -> None:
    path = tmp_path / "cal" / "calibration.json"
    res = runner.invoke(app, ["calibrate", "--devices", "2", "--out", str(path)])
    assert res.exit_code == 0, res.output
    assert f"saved to {path}" in res.output
    cm = CostModel.load(path)
    assert cm.ndev == 2 and cm.contraction_flops_per_s > 0
    assert "contraction_flops_per_s" in res.output
    res = runner.invoke(app, ["calibrate", "-n", "0", "--out", str(path)])
    assert res.exit_code == 2 and "--devices" in res.stderr
    res = runner.invoke(app, ["calibrate", "--ndev", "2"])  # the option's old name
    assert res.exit_code == 2 and "No such option" in res.stderr
    # a file where its folder should be: one error line, status 1
    res = runner.invoke(app, ["calibrate", "-n", "1", "--out", str(path / "inside.json")])
    assert res.exit_code == 1 and res.stderr.startswith("error: ") and "Traceback" not in res.output


def test_version_is_printed_and_comes_from_one_place() -> None:
    import importlib.metadata
    import tomllib

    import einrel

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"einrel {einrel.__version__}"
    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert importlib.metadata.version("einrel") == einrel.__version__
    assert project["license"] == "Apache-2.0"  # an SPDX expression, with the file beside it
    assert "Apache License" in (root / "LICENSE").read_text()


def test_plan_with_doppler_says_it_trains_a_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from einrel.place.doppler import placer

    monkeypatch.setattr(placer, "SHORT_EPISODES", {1: 4, 2: 4})
    res = runner.invoke(app, ["plan", "ffnn_train", "--size", "tiny", "--placer", "doppler"])
    assert res.exit_code == 0, res.output
    note = res.stderr.splitlines()[0]
    assert note.startswith("note: no stored Doppler policy") and "kept nowhere" in note
    assert "einrel place train NAME[:SIZE] --devices 2 --stage 1 --out P.pt" in note


def test_plan_writes_the_plan_picture(tmp_path: Path) -> None:
    for level, marker in (("tasks", "subgraph cluster_d1"), ("nodes", "×")):
        out = tmp_path / f"{level}.dot"
        res = runner.invoke(
            app, ["plan", "ffnn_train", "--size", "tiny", "--dot", str(out), "--dot-level", level]
        )
        assert res.exit_code == 0, res.output
        assert f"plan picture written to {out}" in res.output
        assert out.read_text().startswith('digraph "') and marker in out.read_text()
    res = runner.invoke(app, ["plan", "ffnn_train", "--size", "tiny", "--dot-level", "blocks"])
    assert res.exit_code == 2 and "--dot-level" in res.stderr
