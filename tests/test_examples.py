"""Every script under examples/ runs and does what its docstring says."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from helpers import local_ray

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested() -> None:
    tested = {"mlp_train", "attention", "memory_budget", "ray_run"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_mlp_example_trains(optimizer: str) -> None:
    losses = _load("mlp_train").main(optimizer, steps=60)
    assert len(losses) == 60
    assert losses[-1] < 0.9 * losses[0]


def test_the_mlp_example_runs_as_a_script() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "mlp_train.py"), "--steps", "20"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines() if line.startswith("step")]
    assert float(lines[-1][-1]) < float(lines[0][-1])


def test_the_attention_example_matches_numpy() -> None:
    # float32 softmax and sums over 128 terms: errors of a few 1e-7 relative
    assert _load("attention").main(seq=128, dim=32) < 1e-5


def test_the_memory_budget_example_offloads_and_agrees() -> None:
    res = _load("memory_budget").main(fraction=0.5)
    assert res["peak"] <= res["budget"]
    assert res["offloaded"] > 0
    assert res["error"] < 1e-5  # float32, blocks summed in another order


@pytest.mark.ray
@pytest.mark.xdist_group("ray")
def test_the_ray_example_agrees_with_local_devices() -> None:
    pytest.importorskip("ray")
    with local_ray(2):
        assert _load("ray_run").main(devices=2) < 1e-5
