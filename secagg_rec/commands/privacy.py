"""``secagg-rec privacy epsilon|noise``: ε of a DP-SGD run, or σ for a target ε.

::

    secagg-rec privacy epsilon --sample-rate 0.01 --noise-multiplier 4 --steps 10000 \\
        --delta 1e-5
    secagg-rec privacy noise --target-epsilon 1 --delta 1e-5 --sample-rate 0.01 \\
        --steps 10000
    secagg-rec privacy noise --target-epsilon 2 --delta 1e-6 --sample-rate 0.05 \\
        --epochs 1 --rounds 50          # local epochs x rounds instead of --steps

Neither command loads torch.
"""

from __future__ import annotations

import argparse
from typing import Any

from secagg_rec.commands._output import print_json


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "privacy", help="DP-SGD accounting: ε of a run, or the noise for a target ε"
    )
    sub = parser.add_subparsers(dest="privacy_command", metavar="WHAT")
    sub.required = True
    from secagg_rec.privacy.accountants import ACCOUNTANT_NAMES, DEFAULT_ACCOUNTANT

    eps = sub.add_parser("epsilon", help="ε spent by a DP-SGD run")
    eps.add_argument("--sample-rate", type=float, required=True, help="q in (0, 1]")
    eps.add_argument("--noise-multiplier", type=float, required=True, help="σ >= 0")
    eps.add_argument("--steps", type=int, required=True, help="optimizer steps T >= 0")
    eps.add_argument("--delta", type=float, required=True, help="δ in (0, 1)")
    eps.add_argument(
        "--accountant",
        choices=ACCOUNTANT_NAMES,
        default=DEFAULT_ACCOUNTANT,
        help=f"accountant (default {DEFAULT_ACCOUNTANT})",
    )
    eps.add_argument("--json", action="store_true", help="print one JSON object")
    eps.set_defaults(func=run_epsilon)

    noise = sub.add_parser("noise", help="smallest noise multiplier σ for a target ε")
    noise.add_argument("--target-epsilon", type=float, required=True, help="ε > 0")
    noise.add_argument("--delta", type=float, required=True, help="δ in (0, 1)")
    noise.add_argument("--sample-rate", type=float, required=True, help="q in (0, 1]")
    plan = noise.add_mutually_exclusive_group(required=True)
    plan.add_argument("--steps", type=int, help="total optimizer steps T")
    plan.add_argument("--epochs", type=float, help="local epochs per round (with --rounds)")
    noise.add_argument("--rounds", type=int, default=1, help="rounds of --epochs (default 1)")
    noise.add_argument(
        "--accountant",
        choices=ACCOUNTANT_NAMES,
        default=DEFAULT_ACCOUNTANT,
        help=f"accountant (default {DEFAULT_ACCOUNTANT})",
    )
    noise.add_argument("--json", action="store_true", help="print one JSON object")
    noise.set_defaults(func=run_noise)


def run_epsilon(args: argparse.Namespace) -> int:
    from secagg_rec.privacy import DPSGDEvent, epsilon

    event = DPSGDEvent(args.noise_multiplier, args.sample_rate, args.steps)
    value = epsilon(event, args.delta, args.accountant)
    out = {
        "epsilon": value,
        "delta": args.delta,
        "sample_rate": event.sample_rate,
        "noise_multiplier": event.noise_multiplier,
        "steps": event.steps,
        "accountant": args.accountant,
    }
    if args.json:
        print_json(out)
    else:
        print(f"epsilon: {value:.6g}")
        print(
            f"(δ={args.delta:g}, q={event.sample_rate:g}, σ={event.noise_multiplier:g}, "
            f"T={event.steps}, accountant {args.accountant})"
        )
    return 0


def run_noise(args: argparse.Namespace) -> int:
    from secagg_rec.privacy import DPSGDEvent, calibrate_noise, epsilon, planned_steps

    if args.steps is not None and args.rounds != 1:
        raise ValueError("--rounds goes with --epochs; with --steps give the total")
    if args.steps is not None:
        total = args.steps
        sigma = calibrate_noise(
            args.target_epsilon,
            args.delta,
            args.sample_rate,
            args.steps,
            accountant=args.accountant,
        )
    else:
        sigma = calibrate_noise(
            args.target_epsilon,
            args.delta,
            args.sample_rate,
            epochs=args.epochs,
            rounds=args.rounds,
            accountant=args.accountant,
        )
        total = planned_steps(sample_rate=args.sample_rate, epochs=args.epochs, rounds=args.rounds)
    achieved = epsilon(DPSGDEvent(sigma, args.sample_rate, total), args.delta, args.accountant)
    out = {
        "noise_multiplier": sigma,
        "epsilon": achieved,
        "target_epsilon": args.target_epsilon,
        "delta": args.delta,
        "sample_rate": args.sample_rate,
        "steps": total,
        "accountant": args.accountant,
    }
    if args.json:
        print_json(out)
    else:
        print(f"noise_multiplier: {sigma:.6g}")
        print(
            f"(gives ε={achieved:.6g} <= {args.target_epsilon:g} at δ={args.delta:g}, "
            f"q={args.sample_rate:g}, T={total}, accountant {args.accountant})"
        )
    return 0
