"""Shared test setup: every test runs with einrel's environment variables cleared and its
caches in a fresh temporary folder (nothing reads or writes the user's files), and
`--fuzz-examples N` sets how many random graphs the differential harness draws."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DEFAULT_FUZZ_EXAMPLES = 2000
# What einrel (and Ray, when einrel joins a cluster) read from the environment.
ISOLATED = ("RAY_ADDRESS", "XDG_CACHE_HOME")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-examples",
        type=int,
        default=DEFAULT_FUZZ_EXAMPLES,
        help="random graphs the differential harness checks (tests/test_differential.py)",
    )


@pytest.fixture(scope="session")
def fuzz_examples(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--fuzz-examples"))


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No EINREL_* variable, no Ray address; calibrations and policy caches under tmp_path."""
    for name in list(os.environ):
        if name.startswith("EINREL_") or name in ISOLATED:
            monkeypatch.delenv(name)
    monkeypatch.setenv("EINREL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EINREL_CALIBRATION", str(tmp_path / "calibration.json"))
