"""``secagg-rec simulate``: run secure-aggregation rounds in memory and measure them.

One value per option runs one round and prints (or ``--json``) its measurements. Comma
lists for ``--clients``, ``--dim``, ``--dropout`` or ``--neighbors`` (or ``--out``)
switch to a sweep over their grid: it writes ``sweep.csv``, ``sweep.json``,
``failure.csv`` and PNG plots into ``--out`` (see :mod:`secagg_rec.sim.sweep`).
``--uplink/--downlink/--latency`` add a network wall-time estimate
(:mod:`secagg_rec.sim.cost_model`); ``--workers`` runs the clients in that many
processes (same results).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from secagg_rec.commands._output import format_table, print_json

STAGE_CHOICES = ("advertise", "share", "masked", "consistency", "unmask")


def _split(value: str) -> list[str]:
    parts = [p.strip() for p in value.split(",")]
    if not parts or any(not p for p in parts):
        raise argparse.ArgumentTypeError(f"empty item in list {value!r}")
    return parts


def _one_neighbors(value: str) -> str | int:
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


def _one_int(value: str) -> int:
    """Accept 1000, 1e4, 10_000."""
    try:
        f = float(value.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if f != int(f):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}")
    return int(f)


def _one_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None


def _neighbors(value: str) -> list[str | int]:
    return [_one_neighbors(v) for v in _split(value)]


def _ints(value: str) -> list[int]:
    return [_one_int(v) for v in _split(value)]


def _floats(value: str) -> list[float]:
    return [_one_float(v) for v in _split(value)]


def _workers(value: str) -> int:
    if value == "auto":
        return max(1, os.cpu_count() or 1)
    try:
        w = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or auto, got {value!r}") from None
    if w < 1:
        raise argparse.ArgumentTypeError("--workers must be >= 1")
    return w


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="run secure-aggregation rounds in memory (one, or a sweep)",
        description="Run SecAgg / SecAgg+ rounds with random inputs, in memory, and report "
        "exactness, compute time and bytes per stage. Comma lists for --clients, --dim, "
        "--dropout, --neighbors run a sweep over their grid and write CSV, JSON and PNG "
        "plots into --out.",
    )
    p.add_argument("--clients", type=_ints, required=True,
                   help="number of clients n (comma list for a sweep, e.g. 10,100,1000)")
    p.add_argument("--dim", type=_ints, required=True,
                   help="vector length m in words (1e4 accepted; comma list for a sweep)")
    p.add_argument(
        "--neighbors",
        type=_neighbors,
        default=["full"],
        help="full (classic SecAgg), auto (SecAgg+ with k, t from the parameter helper), "
        "or K neighbours per client; comma list for a sweep (e.g. full,auto)",
    )
    p.add_argument("--threshold", type=int, default=None, help="threshold t (default: chosen)")
    p.add_argument("--dropout", type=_floats, default=[0.0],
                   help="fraction of clients dropping (comma list for a sweep)")
    p.add_argument(
        "--drop-stage", choices=STAGE_CHOICES, default="masked", help="when they drop"
    )
    p.add_argument("--bits", type=int, default=None, help="ring width b (default: 32 or more)")
    p.add_argument("--corrupt", type=float, default=0.05, help="corrupt fraction for auto")
    p.add_argument("--authenticated", action="store_true", help="Ed25519-authenticated mode")
    p.add_argument("--seed", type=int, default=0, help="seed for inputs and dropouts")
    p.add_argument("--workers", type=_workers, default=1,
                   help="client worker processes, or auto (one per core); default 1. "
                   "Results do not depend on it.")
    net = p.add_argument_group(
        "network estimate",
        "Estimate the round's wall time over a network. Values take units (20Mbps, "
        "2.5MB/s; 50ms) or distributions: uniform:LOW:HIGH, lognormal:MEDIAN:SIGMA, "
        "choice:V1,V2,...",
    )
    net.add_argument("--uplink", default=None, help="client upload bandwidth, e.g. 10Mbps")
    net.add_argument("--downlink", default=None, help="client download bandwidth, e.g. 50Mbps")
    net.add_argument("--latency", default="0ms", help="one-way latency per message, e.g. 40ms")
    net.add_argument("--server-bandwidth", default=None,
                     help="the server's own link (default: not a bottleneck), e.g. 10Gbps")
    net.add_argument("--client-compute-scale", type=float, default=1.0,
                     help="client devices are this many times slower than this machine")
    net.add_argument("--stage-timeout", default=None,
                     help="server waits this long for missing clients, e.g. 10s")
    sweep = p.add_argument_group("sweep")
    sweep.add_argument("--out", default=None,
                       help="directory for sweep.csv, sweep.json, failure.csv and plots "
                       "(default ./secagg-sweep; giving it forces sweep mode)")
    sweep.add_argument("--failure-trials", type=int, default=2000,
                       help="Monte Carlo rounds per (n, k, t, dropout) (0: skip)")
    sweep.add_argument("--no-plots", action="store_true", help="do not draw PNG plots")
    sweep.add_argument("--repeats", type=int, default=1,
                       help="rounds per grid point, walking the grid forwards then backwards; "
                       "timings are medians (for a machine shared with other work)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _network(args: argparse.Namespace) -> Any:
    from secagg_rec.sim.cost_model import (
        NetworkModel,
        parse_distribution,
        parse_duration,
        parse_rate,
    )

    if args.uplink is None and args.downlink is None:
        if args.server_bandwidth or args.stage_timeout:
            raise ValueError("--server-bandwidth / --stage-timeout need --uplink and --downlink")
        return None
    if args.uplink is None or args.downlink is None:
        raise ValueError("give both --uplink and --downlink for a network estimate")
    return NetworkModel(
        uplink=parse_distribution(args.uplink, "rate"),
        downlink=parse_distribution(args.downlink, "rate"),
        latency=parse_distribution(args.latency, "duration"),
        server_bandwidth=parse_rate(args.server_bandwidth) if args.server_bandwidth else None,
        client_compute_scale=args.client_compute_scale,
        stage_timeout=parse_duration(args.stage_timeout) if args.stage_timeout else None,
    )


def _stage_bars() -> tuple[Any, dict[str, Any]]:
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=f"{stage:<11}", unit="client",
                                     leave=False, disable=None, file=sys.stderr)
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return progress, bars


def run(args: argparse.Namespace) -> int:
    network = _network(args)
    sweep_mode = args.out is not None or any(
        len(v) > 1 for v in (args.clients, args.dim, args.dropout, args.neighbors)
    )
    if sweep_mode:
        return _run_sweep(args, network)
    return _run_one(args, network)


def _run_one(args: argparse.Namespace, network: Any) -> int:
    from secagg_rec.sim.simulate import SimulationSpec, run_simulation

    spec = SimulationSpec(
        clients=args.clients[0],
        dim=args.dim[0],
        neighbors=args.neighbors[0],
        threshold=args.threshold,
        dropout=args.dropout[0],
        drop_stage=args.drop_stage,
        bits=args.bits,
        authenticated=args.authenticated,
        seed=args.seed,
        corrupt=args.corrupt,
    )
    progress, bars = _stage_bars()
    sim = run_simulation(spec, on_progress=progress, workers=args.workers)
    for bar in bars.values():
        bar.close()
    out = sim.summary
    if network is not None:
        from secagg_rec.sim.cost_model import estimate_round_time

        est = estimate_round_time(sim.result, network, client_ids=sim.config.client_ids,
                                  seed=args.seed)
        out["network_estimate"] = est.as_dict()
    if args.json:
        print_json(out)
    else:
        _print_human(out)
    return 0 if out["ok"] else 1


def _run_sweep(args: argparse.Namespace, network: Any) -> int:
    from tqdm import tqdm

    from secagg_rec.sim.sweep import SweepSpec, neighbours_label, run_sweep, write_sweep

    if args.failure_trials < 0:
        raise ValueError("--failure-trials must be >= 0")
    spec = SweepSpec(
        clients=args.clients,
        dims=args.dim,
        dropouts=args.dropout,
        neighbors=args.neighbors,
        threshold=args.threshold,
        drop_stage=args.drop_stage,
        bits=args.bits,
        authenticated=args.authenticated,
        seed=args.seed,
        corrupt=args.corrupt,
        network=network,
        failure_trials=args.failure_trials,
        workers=args.workers,
        repeats=args.repeats,
    )
    out_dir = args.out or "secagg-sweep"
    total = spec.size * spec.repeats
    outer = tqdm(total=total, desc="sweep", unit="round", disable=None, file=sys.stderr)
    progress, bars = _stage_bars()

    def on_point(i: int, total: int, p: Any) -> None:
        outer.n = i
        outer.refresh()
        outer.set_postfix_str(
            f"n={p.clients} m={p.dim} dropout={p.dropout:g} {neighbours_label(p)}"
        )
        bars.clear()

    result = run_sweep(spec, on_point=on_point, on_progress=progress)
    outer.n = total
    outer.set_postfix_str("failure analysis and plots")
    files = write_sweep(result, out_dir, spec=spec, plots=not args.no_plots,
                        command=_command_line(args, out_dir))
    outer.close()
    counts = {s: sum(r["status"] == s for r in result.rows) for s in ("ok", "aborted", "invalid")}
    if args.json:
        print_json({"ok": result.all_ok, "points": len(result.rows),
                    **{f"{k}_points": v for k, v in counts.items()},
                    "out": out_dir, "files": files, "rows": result.rows})
    else:
        _print_sweep(result.rows, files, counts)
    return 0 if result.all_ok else 1


def _command_line(args: argparse.Namespace, out_dir: str) -> list[str]:
    """The sweep's options, as a ``secagg-rec simulate`` command that reproduces it."""
    cmd = ["secagg-rec", "simulate",
           "--clients", ",".join(map(str, args.clients)),
           "--dim", ",".join(map(str, args.dim)),
           "--dropout", ",".join(f"{d:g}" for d in args.dropout),
           "--neighbors", ",".join(map(str, args.neighbors)),
           "--drop-stage", args.drop_stage, "--seed", str(args.seed),
           "--corrupt", f"{args.corrupt:g}", "--workers", str(args.workers),
           "--failure-trials", str(args.failure_trials), "--repeats", str(args.repeats),
           "--out", out_dir]
    for flag, value in (("--threshold", args.threshold), ("--bits", args.bits),
                        ("--uplink", args.uplink), ("--downlink", args.downlink),
                        ("--server-bandwidth", args.server_bandwidth),
                        ("--stage-timeout", args.stage_timeout)):
        if value is not None:
            cmd += [flag, str(value)]
    if args.uplink is not None:
        cmd += ["--latency", args.latency]
        if args.client_compute_scale != 1.0:
            cmd += ["--client-compute-scale", f"{args.client_compute_scale:g}"]
    if args.authenticated:
        cmd.append("--authenticated")
    if args.no_plots:
        cmd.append("--no-plots")
    return cmd


def _print_sweep(rows: list[dict[str, Any]], files: dict[str, str], counts: dict[str, int]) -> None:
    table = [
        {
            "n": r["clients"],
            "m": r["dim"],
            "dropout": r["dropout"],
            "graph": r["graph"] or r["neighbors_spec"],
            "k": r["neighbors"],
            "t": r["threshold"],
            "status": r["status"],
            "client_s": r["client_seconds_mean"],
            "server_s": r["server_seconds"],
            "up_B": r["bytes_up_per_client"],
            "down_B": r["bytes_down_per_client"],
            "est_s": r["est_round_seconds"],
        }
        for r in rows
    ]
    print(format_table(table, list(table[0])))
    print(f"{counts['ok']} ok, {counts['aborted']} aborted, {counts['invalid']} invalid")
    for r in rows:
        if r["status"] != "ok":
            print(f"  n={r['clients']} m={r['dim']} dropout={r['dropout']} "
                  f"{r['neighbors_spec']}: {r['status']}: {r['reason']}")
    for kind, path in files.items():
        print(f"{kind}: {path}")


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
        f"server {out['server_seconds']:.3f} s; wall {out['wall_seconds']:.2f} s "
        f"({out['workers']} worker{'s' if out['workers'] > 1 else ''})"
    )
    print(
        f"bytes per client: up {out['bytes_up_per_client']:.0f}, "
        f"down {out['bytes_down_per_client']:.0f}; peak memory {out['peak_rss_mb']:.0f} MiB"
        + (f" (largest worker {out['peak_rss_workers_mb']:.0f} MiB, all processes at most "
           f"{out['peak_rss_total_mb']:.0f} MiB)" if out.get("peak_rss_workers_mb") else "")
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
    est = out.get("network_estimate")
    if est:
        spread = "" if est["samples"] == 1 else (
            f" (p10 {est['p10']:.2f} s, p90 {est['p90']:.2f} s over {est['samples']} draws)")
        print(f"estimated wall time over the network: {est['seconds']:.2f} s{spread}; "
              f"compute on the critical path {est['compute_only_seconds']:.2f} s")
