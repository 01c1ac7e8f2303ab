"""``secagg-rec simulate``: run one secure-aggregation round in memory and measure it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from secagg_rec.commands._output import format_table, print_json

STAGE_CHOICES = ("advertise", "share", "masked", "consistency", "unmask")


def _neighbors(value: str) -> str | int:
    if value in ("full", "auto"):
        return value
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected full, auto or an integer, got {value!r}"
        ) from None
    if k < 1:
        raise argparse.ArgumentTypeError("neighbour count must be >= 1")
    return k


def _int_like(value: str) -> int:
    """Accept 1000, 1e4, 10_000."""
    try:
        f = float(value.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if f != int(f):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}")
    return int(f)


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="run one secure-aggregation round in memory",
        description="Run one SecAgg / SecAgg+ round with random inputs, in memory, and "
        "report its exactness, compute time and bytes per stage.",
    )
    p.add_argument("--clients", type=_int_like, required=True, help="number of clients n")
    p.add_argument("--dim", type=_int_like, required=True, help="vector length m")
    p.add_argument(
        "--neighbors",
        type=_neighbors,
        default="full",
        help="full (classic SecAgg), auto (SecAgg+ with k, t from the parameter helper), "
        "or K neighbours per client",
    )
    p.add_argument("--threshold", type=int, default=None, help="threshold t (default: chosen)")
    p.add_argument("--dropout", type=float, default=0.0, help="fraction of clients dropping")
    p.add_argument(
        "--drop-stage", choices=STAGE_CHOICES, default="masked", help="when they drop"
    )
    p.add_argument("--bits", type=int, default=None, help="ring width b (default: 32 or more)")
    p.add_argument("--corrupt", type=float, default=0.05, help="corrupt fraction for auto")
    p.add_argument("--authenticated", action="store_true", help="Ed25519-authenticated mode")
    p.add_argument("--seed", type=int, default=0, help="seed for inputs and dropouts")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from secagg_rec.sim.simulate import SimulationSpec, simulate_round

    spec = SimulationSpec(
        clients=args.clients,
        dim=args.dim,
        neighbors=args.neighbors,
        threshold=args.threshold,
        dropout=args.dropout,
        drop_stage=args.drop_stage,
        bits=args.bits,
        authenticated=args.authenticated,
        seed=args.seed,
        corrupt=args.corrupt,
    )
    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=f"{stage:<11}", unit="client",
                                     leave=False, disable=None, file=sys.stderr)
        bar.update(1)
        if done == total:
            bar.close()

    out = simulate_round(spec, on_progress=progress)
    for bar in bars.values():
        bar.close()
    if args.json:
        print_json(out)
    else:
        _print_human(out)
    return 0 if out["ok"] else 1


def _print_human(out: dict[str, Any]) -> None:
    status = "ok" if out["ok"] else f"ABORTED: {out.get('reason')}"
    print(
        f"round {status}: {out['survivors']}/{out['clients']} survivors, "
        f"{out['graph']} graph k={out['neighbors']} t={out['threshold']}, "
        f"b={out['bits']}, m={out['dim']}"
    )
    if out["ok"]:
        print(
            f"max |decoded - exact| = {out['max_abs_error']:.3g} "
            f"(bound {out['error_bound']:.3g})"
        )
    print(
        f"client seconds: mean {out['client_seconds_mean']:.4f}, max "
        f"{out['client_seconds_max']:.4f}, total {out['client_seconds_total']:.3f}; "
        f"server {out['server_seconds']:.3f} s; wall {out['wall_seconds']:.2f} s"
    )
    print(
        f"bytes per client: up {out['bytes_up_per_client']:.0f}, "
        f"down {out['bytes_down_per_client']:.0f}"
    )
    rows = [
        {
            "stage": s["name"],
            "clients": s["clients"],
            "client_s": s["client_seconds"],
            "client_max_s": s["client_seconds_max"],
            "server_s": s["server_seconds"],
            "bytes_up": s["bytes_up"],
            "bytes_down": s["bytes_down"],
        }
        for s in out["stages"]
    ]
    print(format_table(rows, list(rows[0])))
