"""``secagg-rec bench dp``: one epoch of MF and NeuMF, non-private vs ``make_private``
vs Opacus hooks mode, interleaved in one run (see :mod:`secagg_rec.privacy.bench`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from secagg_rec.commands._output import format_table, print_json


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "dp", help="DP-SGD epoch time: non-private vs make_private vs Opacus hooks mode"
    )
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    p.add_argument(
        "--hooks-steps",
        type=int,
        default=40,
        help="time this many Opacus hooks-mode steps and scale to an epoch (0: full epochs)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--models", default="mf,neumf", help="comma list of mf, neumf")
    p.add_argument("--users", type=int, default=943)
    p.add_argument("--items", type=int, default=1682)
    p.add_argument("--interactions", type=int, default=100_000)
    p.add_argument("--factors", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from secagg_rec.privacy.bench import BenchConfig, run_dp_benchmark

    if args.hooks_steps < 0:
        raise ValueError("--hooks-steps must be >= 0")
    cfg = BenchConfig(
        n_users=args.users,
        n_items=args.items,
        n_interactions=args.interactions,
        factors=args.factors,
        batch_size=args.batch_size,
        repeats=args.repeats,
        hooks_steps=args.hooks_steps or None,
        threads=args.threads,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
    )

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    out = run_dp_benchmark(cfg, progress=None if args.json else progress)
    if args.json:
        print_json(out)
        return 0
    rows = []
    floors = []
    for model, variants in out["results"].items():
        floor = variants.pop("noise_floor")
        floors.append(
            f"{model}: drawing the noise alone ({floor['parameters']} parameters per step) "
            f"takes {floor['cpu_seconds']:.2f} CPU s/epoch = "
            f"{floor['cpu_ratio_of_non_private']:.2f} of the non-private epoch"
        )
        for variant, r in variants.items():
            note = f"scaled from {r['scaled_from_steps']} steps" if r["scaled_from_steps"] else ""
            rows.append(
                {
                    "model": model,
                    "variant": variant,
                    "epoch_s": r["epoch_seconds"],
                    "ratio": r["ratio"],
                    "cpu_s": r["cpu_seconds"],
                    "cpu_ratio": r["cpu_ratio"],
                    "note": note,
                }
            )
    m = out["machine"]
    print(
        f"{m['date']}  {m['platform']}  {m['processor']}  python {m['python']}  "
        f"torch {m['torch']}  threads {m['torch_threads']}"
    )
    c = out["config"]
    print(
        f"{c['n_users']} users, {c['n_items']} items, {c['n_interactions']} interactions, "
        f"factor {c['factors']}, batch {c['batch_size']}, σ={c['noise_multiplier']}, "
        f"C={c['max_grad_norm']}; medians of {c['repeats']} interleaved repeats; ratio = "
        "time / non-private time of the same model"
    )
    print(
        format_table(rows, ("model", "variant", "epoch_s", "ratio", "cpu_s", "cpu_ratio", "note"))
    )
    for line in floors:
        print(line)
    return 0
