"""Shared fixtures: where the shared data sets live."""

from __future__ import annotations

from pathlib import Path

import pytest

# CI clones the repository next to a copy of shared/, so the data sit beside the checkout.
DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory (`<checkout>/../shared/data`)."""
    assert DATA_DIR.is_dir(), f"shared data directory not found at {DATA_DIR}"
    return DATA_DIR
