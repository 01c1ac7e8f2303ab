"""The library imports without Flower; only ``secagg_rec.flower`` needs it."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
sys.modules["flwr"] = None  # as if Flower were not installed
import secagg_rec, secagg_rec.secagg, secagg_rec.encoding, secagg_rec.crypto
assert "flwr" not in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None]
try:
    import secagg_rec.flower
except ImportError as exc:
    assert "pip install 'secagg-rec[flower]'" in str(exc), exc
else:
    raise AssertionError("secagg_rec.flower imported without flwr")
print("ok")
"""


def test_library_imports_without_flwr_and_flower_package_says_how_to_install():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
