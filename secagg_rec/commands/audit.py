"""``secagg-rec audit LEDGER``: per-client ε against budgets; exit 1 if any is over.

::

    secagg-rec audit run/privacy.ledger                  # table + summary
    secagg-rec audit run/privacy.ledger --budget 2 --plot eps.png --json

Exit status: 0 every client within its budget (or ``--budget``), 1 at least one over
(so the command can gate a release), 2 unreadable ledger or bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from secagg_rec.commands._output import format_table, print_json

COLUMNS = (
    "client",
    "rounds",
    "steps",
    "epsilon",
    "epsilon_rdp",
    "budget",
    "remaining",
    "over",
    "pending",
)


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "audit",
        help="audit a privacy ledger: ε per client against budgets (exit 1 if over)",
    )
    p.add_argument("ledger", help="ledger file written by secagg_rec.privacy.PrivacyLedger")
    p.add_argument("--delta", type=float, help="report ε at this δ (default: each budget's δ)")
    p.add_argument(
        "--budget", type=float, help="flag clients over this ε (default: each client's budget)"
    )
    p.add_argument("--plot", metavar="OUT.png", help="write ε against rounds per client")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from secagg_rec.privacy.audit import audit_ledger, plot_epsilon_curves
    from secagg_rec.privacy.ledger import PrivacyLedger

    if args.plot is not None and not args.plot.lower().endswith(".png"):
        raise ValueError(f"--plot must name a .png file, got {args.plot}")
    show_progress = not args.json and sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if show_progress:
            print(f"\raudited {done}/{total} clients", end="", file=sys.stderr, flush=True)

    with PrivacyLedger(args.ledger, create=False) as ledger:
        report = audit_ledger(ledger, delta=args.delta, budget=args.budget, progress=progress)
        if show_progress and report.clients:
            print(file=sys.stderr)
        plot = None
        if args.plot is not None:
            plot = str(plot_epsilon_curves(ledger, report, args.plot))
    summary = report.summary()
    if args.json:
        out = report.to_dict()
        out["plot"] = plot
        out["exit_status"] = 1 if report.any_over_budget else 0
        print_json(out)
    else:
        rows = [
            {
                "client": c.client_id,
                "rounds": c.rounds,
                "steps": c.steps,
                "epsilon": c.epsilon,
                "epsilon_rdp": c.epsilon_rdp,
                "budget": c.budget,
                "remaining": c.remaining,
                "over": "OVER" if c.over_budget else "",
                "pending": c.pending or "",
            }
            for c in report.clients
        ]
        deltas = sorted({c.delta for c in report.clients})
        accountants = sorted({c.accountant for c in report.clients})
        print(f"ledger: {report.ledger}")
        if rows:
            print(
                f"epsilon by {', '.join(accountants)} at δ = "
                f"{', '.join(f'{d:g}' for d in deltas)}; epsilon_rdp by RDP, for comparison"
            )
            print(format_table(rows, COLUMNS))
        med = summary["median_epsilon"]
        mx = summary["max_epsilon"]
        print(
            f"clients: {summary['clients']}  over budget: {summary['over_budget']}  "
            f"max ε: {'-' if mx is None else f'{mx:.4g}'}  "
            f"median ε: {'-' if med is None else f'{med:.4g}'}"
        )
        if summary["pending"]:
            print(
                f"pending reservations (trained, never committed; counted in full): "
                f"{summary['pending']}"
            )
        if plot:
            print(f"plot: {plot}")
    return 1 if report.any_over_budget else 0
