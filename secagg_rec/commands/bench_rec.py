"""``secagg-rec bench rec``: baselines and centralized models, the quality reference.

A front end over :func:`secagg_rec.rec.quality.main` (also runnable as
``python -m secagg_rec.rec.quality``); results are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "rec", help="random / popularity / centralized models by the NCF protocol"
    )
    p.add_argument("--data", default=None, help="dataset path or name (default synthetic)")
    p.add_argument("--models", nargs="+", default=["random", "popularity", "mf", "neumf"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--grid", action="store_true", help="MF: choose among 4 settings on val")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from secagg_rec.rec.quality import main

    argv = ["--models", *args.models, "--seeds", *map(str, args.seeds), "--k", str(args.k),
            "--threads", str(args.threads)]
    if args.data:
        argv += ["--data", args.data]
    if args.grid:
        argv.append("--grid")
    if args.json:
        argv.append("--json")
    return main(argv)
