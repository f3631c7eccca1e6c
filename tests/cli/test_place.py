"""`einrel place`: JSON output, placers, policies, training, and errors without tracebacks
(usage errors exit with status 2, errors einrel raises with one `error:` line and status 1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from einrel.cli.place import app
from einrel.place import load_graph_file
from einrel.place.doppler import DopplerPolicy, load_policy, placer
from einrel.place.doppler.policy import cache_dir
from einrel.place.graphfile import RELEASED_DIR
from einrel.place.simulate import simulate

DATA = RELEASED_DIR  # Doppler's released graphs, shipped inside the package
FFNN = DATA / "ffnn_192nodes.txt"
runner = CliRunner()


def place_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("placer", ["critical-path", "heft", "round-robin", "doppler"])
def test_json_output(placer: str) -> None:
    out = place_json(str(FFNN), "--devices", "4", "--placer", placer)
    assert set(out) == {"graph", "devices", "placer", "makespan", "assignment"}
    g = load_graph_file(FFNN)
    assert out["devices"] == 4 and out["placer"] == placer and out["graph"] == str(FFNN)
    assert len(out["assignment"]) == g.num_ops
    assert all(0 <= d < 4 for d in out["assignment"])
    assert out["makespan"] == pytest.approx(simulate(g, out["assignment"]).makespan / 1e10)


def test_explicit_graph_command_and_search_budget() -> None:
    out = place_json("graph", str(FFNN), "-n", "4", "--placer", "search", "--budget", "0.3")
    assert len(out["assignment"]) == 180


def test_table_output() -> None:
    result = runner.invoke(app, [str(FFNN), "--devices", "4"])
    assert result.exit_code == 0
    assert "lower bound" in result.stdout
    # the placer placed is the baseline: one critical-path row, not two
    assert result.stdout.count("critical-path") == 1
    result = runner.invoke(app, [str(FFNN), "--devices", "4", "--placer", "heft"])
    assert result.exit_code == 0
    assert result.stdout.count("heft") == 1 and result.stdout.count("critical-path") == 1


def test_doppler_without_a_stored_policy_says_it_trains_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(placer, "SHORT_EPISODES", {1: 4, 2: 4})
    chain = str(DATA / "chain_mm_112nodes.txt")  # policies are stored for 4 devices, not 3
    result = runner.invoke(app, [chain, "-n", "3", "--placer", "doppler", "--json"])
    assert result.exit_code == 0, result.output
    note = result.stderr.splitlines()[0]
    assert note.startswith("note: no stored Doppler policy for graph 'chain_mm_112nodes' on 3")
    assert "training one now (8 episodes" in note and "roughly" in note
    stored = next((cache_dir()).glob("chain_mm_112nodes-3dev-*.pt"))
    assert f"kept in {stored}" in note
    assert "einrel place train chain_mm_112nodes --devices 3 --stage 1" in note
    assert len(json.loads(result.stdout)["assignment"]) == 76
    # the next run finds the policy it kept, and says nothing
    result = runner.invoke(app, [chain, "-n", "3", "--placer", "doppler", "--json"])
    assert result.exit_code == 0 and "note:" not in result.stderr


def test_policy_option_and_device_mismatch(tmp_path: Path) -> None:
    path = DopplerPolicy(4).save(tmp_path / "p4.pt")
    out = place_json(str(FFNN), "-n", "4", "--placer", "doppler", "--policy", str(path))
    assert len(out["assignment"]) == 180
    result = runner.invoke(
        app, [str(FFNN), "-n", "8", "--placer", "doppler", "--policy", str(path)]
    )
    assert result.exit_code == 1
    assert "p4.pt was trained for 4 devices, but 8" in result.stderr
    result = runner.invoke(app, [str(FFNN), "-n", "4", "--policy", str(path)])
    assert result.exit_code == 2
    assert "--policy: applies to doppler and doppler+search" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--placer", "magic"],
        ["--placer", "eindecomp-greedy"],  # places einrel task graphs, not graph files
        ["-n", "0"],
    ],
)
def test_bad_options_are_usage_errors(args: list[str]) -> None:
    result = runner.invoke(app, [str(FFNN), "-n", "4", *args])
    assert result.exit_code == 2
    assert "Usage: place graph" in result.stderr and "Invalid value for" in result.stderr
    if "--placer" in args:
        assert "--placer" in result.stderr and "doppler+search" in result.stderr


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("3\n0,\n0,\n1,\n1,4\nx,4\n", ":6:"),  # a cost that is not a number
        ("4\n0,\n0,\n1,\n1,4\n1,4\n", ":7:"),  # fewer op lines than the count says
        ("3\n0,\n0,5,\n1,\n1,4\n1,4\n", ":4:"),  # 2 sources, 1 destination
        ("3\n0,\n0,\n7,\n1,4\n1,4\n", ":4:"),  # an edge to a missing op
    ],
)
def test_malformed_file_names_file_and_line(tmp_path: Path, text: str, where: str) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text(text)
    result = runner.invoke(app, [str(bad), "-n", "2", "--json"])
    assert result.exit_code == 1
    assert f"bad.txt{where}" in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_errors_exit_non_zero_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("2\n\n0,\n")
    proc = subprocess.run(
        [sys.executable, "-m", "einrel.cli.place", str(bad), "--devices", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert f"{bad}:4" in proc.stderr and "Traceback" not in proc.stderr


def test_train_command(tmp_path: Path) -> None:
    out = tmp_path / "chain.pt"
    graph = str(DATA / "chain_mm_112nodes.txt")
    args = ["train", graph, "--devices", "4", "--stage", "1", "--episodes", "6", "--batch", "2"]
    result = runner.invoke(app, [*args, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "stage 1: 6 episodes" in result.stdout
    policy = load_policy(out, 4)
    assert policy.history[-1]["stage"] == 1
    args = ["train", graph, "-n", "4", "--stage", "2", "--episodes", "4", "--init", str(out)]
    result = runner.invoke(app, [*args, "--polish", "0.5", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    history = load_policy(out).history
    assert [h["stage"] for h in history] == [1, 2] and history[-1]["options"]["polish"] == 0.5
    result = runner.invoke(app, [*args[:-2], "--init", str(out), "-n", "8", "--quiet"])
    assert result.exit_code == 1 and "trained for 4 devices" in result.stderr
    result = runner.invoke(app, ["train", graph, "-n", "4", "--stage", "3", "--quiet"])
    assert result.exit_code == 2 and "needs an einrel workload" in result.stderr
    bad_options = [(["--stage", "4"], "--stage"), (["--recipe", "x"], "--recipe")]
    for bad, hint in [*bad_options, (["-n", "0"], "--devices")]:
        result = runner.invoke(app, ["train", graph, "-n", "4", *bad, "--quiet"])
        assert result.exit_code == 2 and f"Invalid value for {hint}" in result.stderr, bad


def test_train_stage3_on_a_workload_chooses_its_devices(tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    args = ["train", "ffnn_train:tiny", "-n", "2", "--stage", "3", "--episodes", "2"]
    opts = ["--batch", "2", "--choose-devices", "1", "--confirm", "1", "--out", str(out)]
    result = runner.invoke(app, [*args, *opts, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "stage 3: 2 episodes" in result.stdout and "places on" in result.stdout
    policy = load_policy(out, 2)
    entry = policy.history[-1]
    assert entry["stage"] == 3 and policy.active == entry["active_devices"] in (1, 2)
    assert set(entry["device_ratios"]) == {1, 2} and entry["device_ratios"][2] == 1.0
