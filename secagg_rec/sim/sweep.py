"""Parameter sweeps: run :func:`~secagg_rec.sim.simulate.run_simulation` over a grid.

A :class:`SweepSpec` holds lists of client counts, vector lengths, dropout rates and
neighbour choices; :func:`run_sweep` runs every combination (clients outermost,
then dim, dropout, neighbours), one round each, and for every distinct ``(n, k, t)``
it ran estimates the round failure rate over a range of dropout rates by Monte Carlo
(:mod:`secagg_rec.sim.failure`). :func:`write_sweep` writes

* ``sweep.csv``: one row per grid point, columns :data:`SWEEP_COLUMNS`;
* ``sweep.json``: ``{"schema", "created", "machine", "command", "grid", "network",
  "rows", "failure", "files"}``; its ``rows`` carry the same fields as the CSV (plus
  the nested per-stage list ``stages``);
* ``failure.csv``: one row per ``(n, k, t, dropout)``, columns :data:`FAILURE_COLUMNS`;
* the PNG plots of :mod:`secagg_rec.sim.plots`.

A grid point that cannot be configured (``auto`` with impossible targets, odd ``k``
with odd ``n``, a threshold above ``k + 1``) is recorded with ``status = "invalid"``
and its reason; a round that aborts for lack of clients has ``status = "aborted"``.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from secagg_rec.secagg.driver import STAGES
from secagg_rec.sim.cost_model import NetworkModel, RoundProfile, estimate_round_time
from secagg_rec.sim.failure import failure_curve
from secagg_rec.sim.simulate import SimulationSpec, resolve_neighbors, run_simulation

__all__ = [
    "FAILURE_COLUMNS",
    "SCHEMA",
    "SWEEP_COLUMNS",
    "TIMING_COLUMNS",
    "SweepResult",
    "SweepSpec",
    "grid_points",
    "machine_info",
    "neighbours_label",
    "run_sweep",
    "write_sweep",
]

SCHEMA = "secagg-rec/sweep/v1"

_STAGE_FIELDS = (
    "client_seconds_mean",
    "client_seconds_max",
    "server_seconds",
    "bytes_up_per_client",
    "bytes_down_per_client",
)

#: Columns of ``sweep.csv`` (and keys of every JSON row), in order. Seconds are
#: compute seconds on the measuring machine; bytes are protocol payload bytes.
SWEEP_COLUMNS: tuple[str, ...] = (
    "status",  # ok | aborted | invalid
    "reason",
    "clients",
    "dim",
    "dropout",
    "drop_stage",
    "neighbors_spec",  # as asked: full, auto or k
    "graph",  # full | secagg+
    "neighbors",  # k actually used
    "threshold",
    "bits",
    "dropped",
    "survivors",
    "max_abs_error",
    "error_bound",
    "client_seconds_mean",
    "client_seconds_max",
    "server_seconds",
    "wall_seconds",
    "bytes_up_per_client",
    "bytes_down_per_client",
    "peak_rss_mb",
    "peak_rss_total_mb",
    "workers",
    "repeats",
    "seed",
    *(f"{stage}_{name}" for stage in STAGES for name in _STAGE_FIELDS),
    "est_round_seconds",
    "est_round_p10_seconds",
    "est_round_p90_seconds",
    "est_compute_only_seconds",
)

#: Columns of ``failure.csv``.
FAILURE_COLUMNS: tuple[str, ...] = (
    "clients",
    "neighbors",
    "threshold",
    "planned_dropout",
    "dropout",
    "dropout_model",
    "trials",
    "failures",
    "rate",
    "ci_low",
    "ci_high",
    "bound",
    "client_rate",
    "client_ci_low",
    "client_ci_high",
    "client_exact",
)


def _check_list(name: str, values: Sequence[Any]) -> tuple[Any, ...]:
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} needs at least one value")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists a value twice: {values}")
    return values


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """The grid to run.

    Args:
        clients: client counts, each ``>= 2``.
        dims: vector lengths, each ``>= 1``.
        dropouts: dropout fractions, each in ``[0, 1)``.
        neighbors: each ``"full"``, ``"auto"`` or an int ``k``.
        threshold, drop_stage, bits, authenticated, seed, corrupt: as in
            :class:`~secagg_rec.sim.simulate.SimulationSpec`, for every point.
        network: if set, every row gets a network-time estimate (``est_*``).
        failure_trials: Monte Carlo trials per ``(n, k, t, dropout)`` (0: skip).
        failure_dropouts: dropout rates of the failure analysis (default 0 to 0.6
            in steps of 0.05, plus the grid's own).
        workers: client worker processes per round.
        repeats: rounds per grid point, interleaved; timings are their medians.

    Raises:
        ValueError: an empty or duplicated list, or a value out of range.
    """

    clients: Sequence[int]
    dims: Sequence[int]
    dropouts: Sequence[float] = (0.0,)
    neighbors: Sequence[str | int] = ("full",)
    threshold: int | None = None
    drop_stage: str = "masked"
    bits: int | None = None
    authenticated: bool = False
    seed: int = 0
    corrupt: float = 0.05
    network: NetworkModel | None = None
    failure_trials: int = 2000
    failure_dropouts: Sequence[float] | None = None
    workers: int = 1
    repeats: int = 1

    def __post_init__(self) -> None:
        for name in ("clients", "dims", "dropouts", "neighbors"):
            values = _check_list(f"--{name.rstrip('s')}", getattr(self, name))
            object.__setattr__(self, name, values)
        grid_points(self)  # validates every value (SimulationSpec's checks)
        if not isinstance(self.failure_trials, int) or self.failure_trials < 0:
            raise ValueError(f"failure_trials must be an int >= 0, got {self.failure_trials!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"--workers must be an int >= 1, got {self.workers!r}")
        if not isinstance(self.repeats, int) or self.repeats < 1:
            raise ValueError(f"--repeats must be an int >= 1, got {self.repeats!r}")
        if self.failure_dropouts is not None:
            fd = tuple(float(d) for d in self.failure_dropouts)
            if not fd or any(not 0 <= d < 1 for d in fd):
                raise ValueError("failure_dropouts must be fractions in [0, 1)")
            object.__setattr__(self, "failure_dropouts", fd)

    @property
    def size(self) -> int:
        """Number of grid points."""
        return len(self.clients) * len(self.dims) * len(self.dropouts) * len(self.neighbors)


def grid_points(spec: SweepSpec) -> list[SimulationSpec]:
    """Every grid point as a :class:`SimulationSpec`, clients outermost.

    Raises:
        ValueError: a value out of range (from :class:`SimulationSpec`).
    """
    return [
        SimulationSpec(
            clients=n,
            dim=m,
            neighbors=k,
            threshold=spec.threshold,
            dropout=d,
            drop_stage=spec.drop_stage,
            bits=spec.bits,
            authenticated=spec.authenticated,
            seed=spec.seed,
            corrupt=spec.corrupt,
        )
        for n, m, d, k in itertools.product(spec.clients, spec.dims, spec.dropouts, spec.neighbors)
    ]


@dataclass
class SweepResult:
    """Rows of the sweep (see :data:`SWEEP_COLUMNS`) and of the failure analysis."""

    rows: list[dict[str, Any]]
    failure: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def all_ok(self) -> bool:
        return all(r["status"] == "ok" for r in self.rows)


def machine_info() -> dict[str, Any]:
    """Where and when the numbers were measured (load averages show a shared machine)."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "loadavg": load,
    }


def _row_from_summary(p: SimulationSpec, out: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SWEEP_COLUMNS)
    row.update({k: out.get(k) for k in SWEEP_COLUMNS if k in out})
    row["status"] = "ok" if out["ok"] else "aborted"
    row["reason"] = out.get("reason")
    row["neighbors_spec"] = str(p.neighbors)
    for st in out["stages"]:
        clients = st["clients"]

        def per(v: float, c: int = clients) -> float:
            return v / c if c else 0.0

        row[f"{st['name']}_client_seconds_mean"] = per(st["client_seconds"])
        row[f"{st['name']}_client_seconds_max"] = st["client_seconds_max"]
        row[f"{st['name']}_server_seconds"] = st["server_seconds"]
        row[f"{st['name']}_bytes_up_per_client"] = per(st["bytes_up"])
        row[f"{st['name']}_bytes_down_per_client"] = per(st["bytes_down"])
    return row


def _invalid_row(p: SimulationSpec, reason: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SWEEP_COLUMNS)
    row.update(
        status="invalid",
        reason=reason,
        clients=p.clients,
        dim=p.dim,
        dropout=p.dropout,
        drop_stage=p.drop_stage,
        neighbors_spec=str(p.neighbors),
        seed=p.seed,
    )
    return row


#: Timing columns: with ``repeats > 1`` these are medians over the repeats.
TIMING_COLUMNS: tuple[str, ...] = (
    "client_seconds_mean",
    "client_seconds_max",
    "server_seconds",
    "wall_seconds",
    *(f"{stage}_{name}" for stage in STAGES for name in _STAGE_FIELDS if "seconds" in name),
    "est_round_seconds",
    "est_round_p10_seconds",
    "est_round_p90_seconds",
    "est_compute_only_seconds",
)


def _one_point(spec: SweepSpec, p: SimulationSpec,
               on_progress: Callable[[str, int, int], None] | None) -> dict[str, Any]:
    try:
        run = run_simulation(p, on_progress=on_progress, workers=spec.workers)
    except ValueError as exc:
        return _invalid_row(p, str(exc))
    row = _row_from_summary(p, run.summary)
    if spec.network is not None:
        est = estimate_round_time(
            RoundProfile.from_result(run.result, run.config.client_ids), spec.network,
            seed=spec.seed,
        )
        row.update(
            est_round_seconds=est.seconds,
            est_round_p10_seconds=est.p10,
            est_round_p90_seconds=est.p90,
            est_compute_only_seconds=est.compute_only_seconds,
        )
    row["stages"] = run.summary["stages"]
    return row


def _median_row(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    row = dict(runs[0])
    row["repeats"] = len(runs)
    if len(runs) > 1 and row["status"] != "invalid":
        for col in TIMING_COLUMNS:
            values = [r[col] for r in runs if r.get(col) is not None]
            if values:
                row[col] = float(np.median(values))
        row["peak_rss_mb"] = max(r["peak_rss_mb"] or 0.0 for r in runs)
        row["peak_rss_total_mb"] = max(r["peak_rss_total_mb"] or 0.0 for r in runs)
    return row


def run_sweep(
    spec: SweepSpec,
    *,
    on_point: Callable[[int, int, SimulationSpec], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> SweepResult:
    """Run every grid point (``spec.repeats`` times), then the failure analysis.

    With repeats, the grid is walked forwards, then backwards, and so on, so that a
    machine whose speed drifts (other work starting or stopping) affects every point
    alike; timing columns (:data:`TIMING_COLUMNS`) are the medians over the repeats,
    everything else (bytes, errors, survivors: the same in every repeat) and the
    per-stage ``stages`` list come from the first.

    Args:
        spec: the grid.
        on_point: called as ``(index, total, point)`` before each round
            (``total = size * repeats``).
        on_progress: passed to each round (``(stage, done, total)``).

    Returns:
        A :class:`SweepResult`; invalid points and aborted rounds are rows too.
    """
    points = grid_points(spec)
    runs: list[list[dict[str, Any]]] = [[] for _ in points]
    started = machine_info()
    total = len(points) * spec.repeats
    done = 0
    for r in range(spec.repeats):
        order = range(len(points)) if r % 2 == 0 else range(len(points) - 1, -1, -1)
        for i in order:
            if on_point is not None:
                on_point(done, total, points[i])
            done += 1
            if runs[i] and runs[i][0]["status"] == "invalid":
                continue  # cannot be configured: nothing to repeat
            runs[i].append(_one_point(spec, points[i], on_progress))
    rows = [_median_row(rs) for rs in runs]
    failure = _failure_rows(spec, points, rows)
    return SweepResult(
        rows=rows,
        failure=failure,
        meta={"machine": started, "machine_end": machine_info()},
    )


def _failure_rows(
    spec: SweepSpec, points: Sequence[SimulationSpec], rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    if spec.failure_trials == 0:
        return []
    axis = spec.failure_dropouts or tuple(round(0.05 * i, 2) for i in range(13))
    dropouts = sorted({*axis, *spec.dropouts})
    # (n, k, t) -> the largest dropout the helper chose it for (None: k given by hand)
    seen: dict[tuple[int, int, int], float | None] = {}
    for p, row in zip(points, rows, strict=True):
        if row["status"] == "invalid" or row["neighbors"] is None:
            continue
        key = (p.clients, int(row["neighbors"]), int(row["threshold"]))
        planned = p.dropout if p.neighbors == "auto" else None
        old = seen.get(key)
        seen[key] = planned if old is None else max(old, planned or 0.0)
    out = []
    for (n, k, t), planned in seen.items():
        for est in failure_curve(n, k, t, dropouts, trials=spec.failure_trials, seed=spec.seed):
            out.append(
                {
                    "clients": n,
                    "neighbors": k,
                    "threshold": t,
                    "planned_dropout": planned,
                    **{c: getattr(est, c) for c in FAILURE_COLUMNS[4:]},
                }
            )
    return out


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, tuples -> lists (recursively)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        return ""
    return v


def write_sweep(
    result: SweepResult,
    out_dir: str | os.PathLike[str],
    *,
    spec: SweepSpec | None = None,
    plots: bool = True,
    command: Sequence[str] | None = None,
) -> dict[str, str]:
    """Write ``sweep.csv``, ``sweep.json``, ``failure.csv`` and the plots.

    Args:
        result: from :func:`run_sweep`.
        out_dir: created if missing; existing files of the same names are replaced.
        spec: recorded in the JSON's ``grid``.
        plots: draw the PNGs.
        command: the command line to record (default ``sys.argv``).

    Returns:
        File kind -> path written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    csv_path = out / "sweep.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(SWEEP_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in SWEEP_COLUMNS})
    files["csv"] = str(csv_path)
    fail_path = out / "failure.csv"
    with fail_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(FAILURE_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in result.failure:
            writer.writerow({k: _csv_value(row.get(k)) for k in FAILURE_COLUMNS})
    files["failure_csv"] = str(fail_path)
    if plots:
        from secagg_rec.sim.plots import plot_sweep

        files.update(plot_sweep(result.rows, result.failure, out))
    json_path = out / "sweep.json"
    files["json"] = str(json_path)
    grid = None
    if spec is not None:
        grid = {
            "clients": list(spec.clients),
            "dims": list(spec.dims),
            "dropouts": list(spec.dropouts),
            "neighbors": [str(k) for k in spec.neighbors],
            "threshold": spec.threshold,
            "drop_stage": spec.drop_stage,
            "bits": spec.bits,
            "authenticated": spec.authenticated,
            "seed": spec.seed,
            "corrupt": spec.corrupt,
            "workers": spec.workers,
            "repeats": spec.repeats,
            "failure_trials": spec.failure_trials,
        }
    doc = {
        "schema": SCHEMA,
        "created": result.meta.get("machine", {}).get("date"),
        "machine": result.meta.get("machine"),
        "machine_end": result.meta.get("machine_end"),
        "command": list(command if command is not None else sys.argv),
        "grid": grid,
        "network": spec.network.describe() if spec is not None and spec.network else None,
        "columns": list(SWEEP_COLUMNS),
        "rows": result.rows,
        "failure": result.failure,
        "files": files,
    }
    json_path.write_text(json.dumps(_json_safe(doc), indent=2) + "\n", encoding="utf-8")
    return files


def neighbours_label(p: SimulationSpec) -> str:
    """``"full"``, ``"auto"`` or ``"k=K"`` for progress text (never raises)."""
    try:
        k, t, _ = resolve_neighbors(p)
    except ValueError:
        return str(p.neighbors)
    return f"{p.neighbors}(k={k if k != 'full' else p.clients - 1},t={t})"
