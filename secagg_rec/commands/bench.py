"""``secagg-rec bench <what>``: benchmarks that print measured numbers (``--json``).

Each benchmark lives in its own ``bench_<what>`` module with ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

BENCH_MODULES: tuple[str, ...] = (
    "secagg_rec.commands.bench_masking",
    "secagg_rec.commands.bench_flower",
    "secagg_rec.commands.bench_costmodel",
    "secagg_rec.commands.bench_dp",
    "secagg_rec.commands.bench_rec",
)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="run a benchmark and print its numbers"
    )
    sub = parser.add_subparsers(dest="bench", metavar="WHAT")
    sub.required = True
    for name in BENCH_MODULES:
        importlib.import_module(name).register(sub)
