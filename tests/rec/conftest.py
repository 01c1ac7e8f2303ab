"""Fixtures for the recommendation tests.

The models here are small embedding models: torch's intra-op threads only add
contention on a shared 2-core machine (a 4x slowdown was measured under load), so the
tests run torch single-threaded and restore the setting afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_torch() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
