"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The folder of real public image sets, or None when it is not here.

    ``IMGTOOL_SHARED_DATA`` names it; by default it is ``../shared/data`` beside the
    project checkout (never inside it: the sets may not be redistributed).
    """
    env = os.environ.get("IMGTOOL_SHARED_DATA")
    candidates = [Path(env)] if env else [REPO.parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; the test is skipped when it is absent."""
    d = shared_data_dir()
    if d is None:
        pytest.skip("real image sets (../shared/data) not available")
    return d


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so every test sees the same numbers."""
    return np.random.default_rng(12345)
