"""examples/plug_into_your_loop.py runs, spends its budget exactly, and is refused after."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from secagg_rec.privacy import PrivacyLedger

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plug_into_your_loop.py"


@pytest.mark.slow
def test_example_trains_the_planned_rounds_then_is_refused(tmp_path):
    ledger = tmp_path / "example.ledger"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--ledger", str(ledger)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    trained = [ln for ln in lines if re.match(r"round \d+: loss", ln)]
    assert len(trained) == 5
    assert all("(ghost)" in ln for ln in trained)
    assert any(ln.startswith("round 5: refused") for ln in lines)
    with PrivacyLedger(ledger, create=False) as led:
        spend = led.summary("client-1")
    assert spend.rounds == 5 and spend.steps == 5 * 32
    assert 0.98 * 3.0 <= spend.epsilon_spent <= 3.0
