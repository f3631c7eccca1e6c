"""`Program.save` / `er.load`: the plan runs again without compiling, in this process and in a
fresh one; files from another version, damaged files and mismatched devices or tensors are
refused with a ProgramFileError that says what differs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import einrel as er
import einrel.program


def model(rows: int = 32) -> tuple[list[er.Tensor], dict[str, np.ndarray]]:
    x = er.input("x", (rows, 16), "float64")
    w = er.input("w", (16, 8), "float64")
    loss = (er.relu(er.einsum("ij,jk->ik", x, w, name="hidden")) ** 2).sum()
    rng = np.random.default_rng(0)
    return [loss, *er.grad(loss, [w])], {
        "x": rng.standard_normal((rows, 16)),
        "w": rng.standard_normal((16, 8)),
    }


@pytest.mark.parametrize("memory", [None, "8KiB"])
def test_a_saved_program_runs_without_compiling(
    memory: str | None, tmp_path: Path, monkeypatch: Any
) -> None:
    outs, feeds = model()
    prog = er.compile(outs, devices=er.cpu(2, memory=memory))
    want = prog(feeds)
    path = prog.save(tmp_path / "p.einrel")
    prog.close()

    def no_compiling(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("load must not build or place tasks")

    monkeypatch.setattr(einrel.program, "build_tasks", no_compiling)
    monkeypatch.setattr(einrel.program, "place_tasks", no_compiling)
    again = er.load(path, outputs=outs)
    assert again.plan.tasks == prog.plan.tasks and again.plan.partitions == prog.plan.partitions
    assert (again.plan.memgraph is None) == (memory is None)
    for a, b in zip(again(feeds), want):
        np.testing.assert_array_equal(a, b)
    assert "hidden" in again.plan.partitions
    again.close()


def test_a_saved_program_loads_in_a_fresh_process(tmp_path: Path) -> None:
    outs, feeds = model()
    prog = er.compile(outs, devices=er.cpu(2, memory="8KiB"))
    want = prog(feeds)
    prog.save(tmp_path / "p.einrel")
    np.savez(tmp_path / "feeds.npz", **feeds)
    code = (
        "import numpy as np, einrel as er, sys\n"
        "d = sys.argv[1]\n"
        "feeds = dict(np.load(d + '/feeds.npz'))\n"
        "out = er.load(d + '/p.einrel')(feeds)\n"
        "np.savez(d + '/out.npz', *out)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    got = np.load(tmp_path / "out.npz")
    for k, b in enumerate(want):
        np.testing.assert_array_equal(got[f"arr_{k}"], b)
    prog.close()


def test_files_that_are_not_for_this_einrel_are_refused(tmp_path: Path) -> None:
    outs, _ = model()
    prog = er.compile(outs, devices=er.cpu(2))
    path = prog.save(tmp_path / "p.einrel")
    prog.close()
    data = path.read_bytes()
    old = tmp_path / "old.einrel"
    old.write_bytes(data.replace(f'"einrel": "{er.__version__}"'.encode(), b'"einrel": "0.0.1"'))
    with pytest.raises(er.ProgramFileError, match=r"saved by einrel 0\.0\.1, this is einrel"):
        er.load(old)
    cut = tmp_path / "cut.einrel"
    cut.write_bytes(data[: len(data) - 40])
    with pytest.raises(er.ProgramFileError, match="damaged"):
        er.load(cut)
    other = tmp_path / "other.bin"
    other.write_bytes(b"\x80\x04not einrel")
    with pytest.raises(er.ProgramFileError, match="not a saved einrel program"):
        er.load(other)
    with pytest.raises(er.ProgramFileError, match="cannot read"):
        er.load(tmp_path / "missing.einrel")


def test_devices_and_tensors_must_be_those_planned_for(tmp_path: Path) -> None:
    outs, _ = model()
    plain = er.compile(outs, devices=er.cpu(2)).save(tmp_path / "plain.einrel")
    budget = er.compile(outs, devices=er.cpu(2, memory="8KiB")).save(tmp_path / "mem.einrel")
    with pytest.raises(er.ProgramFileError, match=r"on 2 device\(s\), not 3 \(cpu\(3\)\)"):
        er.load(plain, devices=er.cpu(3))
    with pytest.raises(er.ProgramFileError, match="runs memory plans, and the saved plan has none"):
        er.load(plain, devices=er.cpu(2, memory="1MiB"))
    with pytest.raises(er.ProgramFileError, match=r"memory-planned for cpu\(2, memory=8192\)"):
        er.load(budget, devices=er.cpu(2, memory="16KiB"))
    er.load(plain, devices=er.cpu(2)).close()
    bigger, _ = model(rows=64)
    with pytest.raises(er.ProgramFileError, match=r"x: saved \(\(32, 16\), 'float64'\), asked"):
        er.load(plain, outputs=bigger)
    with pytest.raises(er.ProgramFileError, match="planned for another graph"):
        er.load(plain, outputs=outs[0])
