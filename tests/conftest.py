"""Shared test options: `--fuzz-examples N` sets how many random graphs the differential
harness draws (`make fuzz` runs many more than the default)."""

from __future__ import annotations

import pytest

DEFAULT_FUZZ_EXAMPLES = 2000


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
