"""Shared test fixtures.

Real data lives outside the repo, in ``../shared/data`` relative to the checkout (or
wherever ``SECAGG_REC_DATA`` points); tests that need it skip with a reason if absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Directory holding downloaded datasets (``ml-100k/`` ...)."""
    env = os.environ.get("SECAGG_REC_DATA")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """Path to MovieLens 100K, or skip the test with the reason."""
    path = shared_data_dir() / "ml-100k"
    if not (path / "u.data").is_file():
        pytest.skip(f"MovieLens 100K not found at {path} (set SECAGG_REC_DATA)")
    return path
