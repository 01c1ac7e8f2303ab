"""The examples run and print what the docs say they print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_secagg_dropouts_example_recovers_the_mean():
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "secagg_dropouts.py")],
        capture_output=True, text=True, check=True, timeout=120,
    )
    assert "survivors: (1, 2, 4, 5, 6, 7, 8, 9, 10)" in proc.stdout
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("max error"))
    err, bound = float(line.split()[2]), float(line.split()[-1])
    assert err <= bound
