"""What every command shares: help that renders flags as flags and stays inside the repository,
one spelling per option, and one error convention (usage errors: status 2 and click's usage
message; errors einrel raises: one `error:` line on stderr and status 1)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from einrel.cli.main import app

runner = CliRunner(env={"COLUMNS": "160"})  # wide, so no option name or type is cut


def _commands(cmd: object, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """Every command and group under `cmd`, with the words that reach it."""
    found = [(path, cmd)]
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))
PATHS = [path for path, _ in COMMANDS]


def test_every_command_is_covered() -> None:
    names = {" ".join(p) for p in PATHS}
    assert {"", "demo", "plan", "calibrate", "place", "place graph", "place train"} <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "einrel")
def test_help_shows_flags_as_flags_and_names_no_outside_document(path: tuple[str, ...]) -> None:
    res = runner.invoke(app, [*path, "--help"])
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert "Usage: einrel" in text
    for metavar in ("<bool>", "BOOLEAN", "<boolean>", "[bool]"):
        assert metavar not in text, metavar
    assert "--no-quiet" not in text  # --quiet is a plain flag
    # help may name a paper, but not a file or section that is not shipped with einrel
    assert not re.search(r"§|PAPERS|NOTES|\b\w+\.md\b|https?://", text), text


def test_one_spelling_per_option_across_commands() -> None:
    spellings: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for _, cmd in COMMANDS:
        for param in getattr(cmd, "params", []):
            if param.param_type_name == "option":
                spellings[param.name].add(tuple(sorted(param.opts)))
    assert {k: v for k, v in spellings.items() if len(v) > 1} == {}
    assert spellings["devices"] == {("--devices", "-n")}
    opts = {o for v in spellings.values() for t in v for o in t}
    assert not opts & {"--ndev", "--path", "--num-devices"}


def _graph_file(tmp_path: Path) -> str:
    bad = tmp_path / "bad.txt"
    bad.write_text("3\n0,\n0,\n1,\n1,4\nx,4\n")  # line 6: a cost that is not a number
    return str(bad)


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["demo", "--devices", "0"], "--devices"),
        (["demo", "--placer", "nope"], "--placer"),
        (["plan", "ffnn_train", "--placer", "nope"], "--placer"),
        (["plan", "ffnn_train", "-n", "0"], "--devices"),
        (["calibrate", "--devices", "0"], "--devices"),
        (["place", "ffnn_192nodes", "-n", "2", "--placer", "nope"], "--placer"),
        (["place", "graph", "ffnn_192nodes", "-n", "0"], "--devices"),
        (["place", "train", "ffnn_192nodes", "-n", "2", "--stage", "9"], "--stage"),
    ],
)
def test_usage_errors_exit_2_in_every_command(args: list[str], hint: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert res.stdout == "" and "Usage: einrel " in res.stderr
    assert f"Invalid value for {hint}" in res.stderr and "Traceback" not in res.output


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "ffnn_train", "--size", "tiny", "--cost-model", "missing.json"],
        ["calibrate", "-n", "1", "--out", "{bad}/calibration.json"],  # a file as its folder
        ["place", "{bad}", "-n", "2"],
        ["place", "train", "{bad}", "-n", "2", "--episodes", "1", "--quiet"],
    ],
)
def test_einrel_errors_exit_1_with_one_line_in_every_command(
    args: list[str], tmp_path: Path
) -> None:
    bad = _graph_file(tmp_path)
    res = runner.invoke(app, [a.replace("{bad}", bad) for a in args])
    assert res.exit_code == 1, res.output
    assert res.stdout == "" and "Traceback" not in res.output
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
