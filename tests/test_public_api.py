"""The curated top-level API resolves, and importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import secagg_rec


def test_every_public_name_resolves():
    for name in secagg_rec.__all__:
        assert getattr(secagg_rec, name) is not None, name


def test_import_does_not_load_torch_and_protocol_layers_never_do():
    code = (
        "import sys, secagg_rec, secagg_rec.secagg, secagg_rec.crypto.shamir, "
        "secagg_rec.secagg.params, secagg_rec.encoding, secagg_rec.privacy, "
        "secagg_rec.fl, secagg_rec.rec\n"
        "s = secagg_rec.SecAggConfig\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_cli_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "secagg_rec", "--help"], capture_output=True,
                         text=True, check=True)
    for cmd in ("train", "simulate", "privacy", "audit", "data", "bench"):
        assert cmd in out.stdout
