"""``secagg-rec bench costmodel``: the network cost model against emulated networks."""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from secagg_rec.commands._output import format_table, print_json


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "costmodel",
        help="network cost model's prediction against emulated-network rounds",
        description="For a few rounds, predict the wall time with the cost model (from an "
        "in-memory run's compute and bytes) and measure it over an emulated network (real "
        "protocol, real sleeps per transfer); print the relative errors.",
    )
    p.add_argument("--seeds", type=int, default=3, help="network draws per case")
    p.add_argument("--client-cores", default="1",
                   help="cores the emulated clients share (model and emulator), or 'none' for "
                   "free-running threads (the model then assumes a device per client)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from secagg_rec.sim.emulate import validate_cost_model
    from secagg_rec.sim.sweep import machine_info

    if args.seeds < 1:
        raise ValueError("--seeds must be >= 1")
    start = machine_info()
    cores = None if args.client_cores == "none" else int(args.client_cores)
    rows = validate_cost_model(seeds=args.seeds, client_cores=cores)
    errors = [abs(float(r["error"])) for r in rows]  # type: ignore[arg-type]
    ahead = [abs(float(r["error_ahead"])) for r in rows]  # type: ignore[arg-type]
    out = {
        "machine": start,
        "machine_end": machine_info(),
        "rows": rows,
        "abs_error_median": statistics.median(errors),
        "abs_error_max": max(errors),
        "abs_error_ahead_median": statistics.median(ahead),
        "abs_error_ahead_max": max(ahead),
    }
    if args.json:
        print_json(out)
        return 0
    print(format_table(rows, list(rows[0])))
    print(f"|error| given the emulation's own compute: median {out['abs_error_median']:.1%}, "
          f"max {out['abs_error_max']:.1%}")
    print(f"|error| given an earlier in-memory run: median {out['abs_error_ahead_median']:.1%}, "
          f"max {out['abs_error_ahead_max']:.1%}")
    return 0
