"""The curated ``secagg_rec.rec`` namespace."""

from __future__ import annotations

import subprocess
import sys

import secagg_rec.rec as rec


def test_every_exported_name_resolves():
    assert sorted(rec.__all__) == sorted(rec._EXPORTS)
    for name in rec.__all__:
        assert getattr(rec, name) is not None


def test_cli_registration_and_package_import_do_not_load_torch():
    code = (
        "import argparse, sys\n"
        "import secagg_rec.rec\n"
        "from secagg_rec.commands import data\n"
        "data.register(argparse.ArgumentParser().add_subparsers())\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
