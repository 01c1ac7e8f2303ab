"""``secagg-rec bench flower``: Flower 1.42's SecAgg+ and ours on the same round.

Needs the ``bench`` extra (``pip install 'secagg-rec[bench]'``, i.e. ``flwr==1.42.*``).
What exactly runs on each side is in :mod:`secagg_rec.sim.flower_compare`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from secagg_rec.commands._output import format_table, print_json

_STAGES = ("advertise", "share", "masked", "consistency", "unmask")


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "flower",
        help="Flower 1.42 SecAgg+ against ours on the same round (needs flwr)",
        description="Run Flower 1.42's SecAgg+ (its workflow and client mod, in this "
        "process over an in-memory grid) and secagg_rec on the same n, m, dropouts and "
        "neighbour count, interleaved, and compare time, bytes per client and error; "
        "then run the cases where the two behave differently.",
    )
    p.add_argument("--clients", type=int, default=100, help="n (default 100)")
    p.add_argument("--dim", type=int, default=100_000, help="vector length m (default 1e5)")
    p.add_argument("--neighbors", type=int, default=21,
                   help="k neighbours (Flower's num_shares = k + 1); default 21. If k is odd, "
                   "the comparison also runs k - 1, which Flower supports")
    p.add_argument("--threshold", type=int, default=11, help="t (default 11)")
    p.add_argument("--dropout", type=float, default=0.1, help="fraction dropping (0.1)")
    p.add_argument("--drop-stage", choices=_STAGES, default="consistency",
                   help="when they drop (default consistency: after uploading)")
    p.add_argument("--repeats", type=int, default=1, help="interleaved repeats (medians)")
    p.add_argument("--seed", type=int, default=0, help="inputs and dropouts")
    p.add_argument("--no-behaviour", action="store_true",
                   help="skip the small cases where the libraries behave differently")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's fields, with timing fields replaced by medians over runs."""
    out = dict(runs[0])
    for key in ("client_seconds_total", "client_seconds_mean", "server_seconds",
                "wall_seconds"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    out["repeats"] = len(runs)
    return out


def _work(r: dict[str, Any]) -> float | None:
    if r.get("client_seconds_total") is None:
        return None
    return r["client_seconds_total"] + r["server_seconds"]


def run(args: argparse.Namespace) -> int:
    from secagg_rec.sim.flower_compare import (
        FlowerCase,
        behaviour_cases,
        flower_available,
        flower_version,
        run_flower_secaggplus,
        run_ours,
    )
    from secagg_rec.sim.sweep import machine_info

    if not flower_available():
        print("secagg-rec bench: error: flwr is not installed; install the bench extra: "
              "pip install 'secagg-rec[bench]'", file=sys.stderr)
        return 2
    if args.repeats < 1:
        raise ValueError("--repeats must be >= 1")
    if not 0 <= args.dropout < 1:
        raise ValueError("--dropout must be in [0, 1)")
    base = dict(clients=args.clients, dim=args.dim, threshold=args.threshold,
                dropout=args.dropout, drop_stage=args.drop_stage, seed=args.seed)
    ks = [args.neighbors] + ([args.neighbors - 1] if args.neighbors % 2 else [])
    cases = [FlowerCase(name=f"n={args.clients} m={args.dim} k={k} t={args.threshold}",
                        neighbors=k, **base) for k in ks]
    start = machine_info()
    results = []
    for case in cases:
        print(f"running {case.name} ...", file=sys.stderr)
        ours, flower = [], []
        for _ in range(args.repeats):  # interleaved, so a busy machine slows both
            ours.append(run_ours(case))
            flower.append(run_flower_secaggplus(case))
        o, f = _median_run(ours), _median_run(flower)
        wo, wf = _work(o), _work(f)
        results.append({
            "case": case.describe(),
            "ours": o,
            "flower": f,
            "work_ratio_flower_over_ours": wf / wo if (wo and wf and o["ok"] and f["ok"])
            else None,
        })
    behaviour = []
    if not args.no_behaviour:
        for case in behaviour_cases(args.seed):
            print(f"running behaviour case {case.name} ...", file=sys.stderr)
            behaviour.append({"case": case.describe(), "ours": run_ours(case),
                              "flower": run_flower_secaggplus(case)})
    out = {
        "flwr": flower_version(),
        "machine": start,
        "machine_end": machine_info(),
        "comparison": results,
        "behaviour": behaviour,
    }
    if args.json:
        print_json(out)
    else:
        _print_human(out)
    return 0


def _print_human(out: dict[str, Any]) -> None:
    rows = []
    for r in out["comparison"]:
        for side in ("ours", "flower"):
            x = r[side]
            rows.append({
                "case": r["case"]["name"],
                "library": x["library"],
                "ok": x["ok"],
                "client_total_s": x.get("client_seconds_total"),
                "server_s": x.get("server_seconds"),
                "up_B/client": x.get("bytes_up_per_client"),
                "down_B/client": x.get("bytes_down_per_client"),
                "max_err_mean": x.get("max_abs_error_mean"),
            })
    print(f"flwr {out['flwr']}; machine: {out['machine']['cpu']}, {out['machine']['cpus']} cpus, "
          f"load {out['machine']['loadavg']}")
    print(format_table(rows, list(rows[0])))
    for r in out["comparison"]:
        ratio = r["work_ratio_flower_over_ours"]
        if ratio is not None:
            print(f"{r['case']['name']}: Flower needs {ratio:.1f}x our client+server time")
        elif not r["flower"]["ok"]:
            print(f"{r['case']['name']}: Flower failed: {r['flower']['error']}; "
                  f"{r['flower']['client_error_examples'][:1]}")
    for b in out["behaviour"]:
        print(f"\n{b['case']['name']}:")
        for side in ("ours", "flower"):
            x = b[side]
            what = "ok" if x["ok"] else ("refused" if x.get("refused") else "failed")
            detail = x.get("error") or ""
            if x["ok"]:
                detail = f"max error of the mean {x['max_abs_error_mean']:.3g}"
            print(f"  {x['library']:<12} {what}: {detail}")
            for ex in x.get("client_error_examples", [])[:1]:
                print(f"  {'':<12} client error: {ex}")
