"""One simulated round: random float inputs, quantized, aggregated in memory.

Used by ``secagg-rec simulate`` and by sweeps. Every client's input is drawn from its
own generator seeded by ``(seed, client id)``, so it can be regenerated instead of
kept: memory stays O(dim) however many clients there are, and worker processes
(``workers > 1``, :mod:`secagg_rec.sim.pool`) regenerate their own clients' inputs.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from secagg_rec.crypto.keys import SigningKey
from secagg_rec.encoding import Quantizer, required_bits
from secagg_rec.secagg.config import SecAggConfig
from secagg_rec.secagg.driver import STAGES, RoundResult, run_round

__all__ = [
    "EncodedInputs",
    "SimulationRun",
    "SimulationSpec",
    "choose_dropouts",
    "client_input",
    "default_threshold",
    "resolve_neighbors",
    "run_simulation",
    "simulate_round",
]

INPUT_CLIP = 1.0  # inputs are uniform on [-1, 1]
DEFAULT_LEVELS = 1 << 16  # quantization units per client per 1.0 at the default ring


@dataclass(frozen=True, kw_only=True)
class SimulationSpec:
    """What to simulate.

    Args:
        clients: ``n >= 2``.
        dim: floats per client input, ``>= 1``.
        neighbors: ``"full"``, ``"auto"`` (from :func:`choose_parameters`) or ``k``.
        threshold: ``t``; ``None`` picks it (see :func:`default_threshold`).
        dropout: fraction of clients that drop, in ``[0, 1)``.
        drop_stage: one of :data:`~secagg_rec.secagg.driver.STAGES`.
        bits: ring width; ``None`` picks 32, or more if needed to hold ``n`` inputs.
        authenticated: Ed25519-authenticated mode.
        seed: seeds inputs, dropout choice and the session id.
        corrupt: tolerated corrupt fraction for ``"auto"`` (default 0.05).
    """

    clients: int
    dim: int
    neighbors: str | int = "full"
    threshold: int | None = None
    dropout: float = 0.0
    drop_stage: str = "masked"
    bits: int | None = None
    authenticated: bool = False
    seed: int = 0
    corrupt: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.clients, int) or self.clients < 2:
            raise ValueError(f"--clients must be an int >= 2, got {self.clients!r}")
        if not isinstance(self.dim, int) or self.dim < 1:
            raise ValueError(f"--dim must be an int >= 1, got {self.dim!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.drop_stage not in STAGES:
            raise ValueError(f"--drop-stage must be one of {', '.join(STAGES)}")
        if not (self.neighbors in ("full", "auto") or isinstance(self.neighbors, int)):
            raise ValueError(f"--neighbors must be full, auto or an int, got {self.neighbors!r}")


def default_threshold(n: int, k: int) -> int:
    """Threshold used when none is given for an explicit ``k``: a majority of the
    ``k + 1`` holders, ``floor((k + 1) / 2) + 1`` (at least 2, at most ``k + 1``)."""
    return min(k + 1, max(2, (k + 1) // 2 + 1))


def resolve_neighbors(spec: SimulationSpec) -> tuple[int | str, int, str]:
    """Return ``(neighbors for the config, threshold, how they were chosen)``."""
    n = spec.clients
    if spec.neighbors == "auto":
        from secagg_rec.secagg.params import choose_parameters

        params = choose_parameters(n, dropout=spec.dropout, corrupt=spec.corrupt)
        k, t = params.k, params.t
        how = f"auto: choose_parameters(n={n}, dropout={spec.dropout}, corrupt={spec.corrupt})"
    elif spec.neighbors == "full":
        k = n - 1
        t = default_threshold(n, k)
        how = "full"
    else:
        k = int(spec.neighbors)
        t = default_threshold(n, k)
        how = "explicit"
    if spec.threshold is not None:
        t = spec.threshold
    return ("full" if k == n - 1 else k), t, how


def choose_dropouts(spec: SimulationSpec) -> tuple[int, ...]:
    """The clients (ids ``1..n``) that drop: ``round(dropout * n)`` of them, drawn from
    ``(seed, 0xD209)``, in the order drawn."""
    n = spec.clients
    n_drop = round(spec.dropout * n)
    if not n_drop:
        return ()
    rng = np.random.default_rng([spec.seed, 0xD209])
    return tuple(int(c) for c in rng.choice(np.arange(1, n + 1), size=n_drop, replace=False))


def client_input(seed: int, cid: int, dim: int) -> np.ndarray:
    """Client ``cid``'s float input: ``dim`` values uniform on ``[-1, 1]`` from
    ``(seed, cid)`` (the same in every process and every library compared)."""
    return _client_input(seed, cid, dim)


def _client_input(seed: int, cid: int, dim: int) -> np.ndarray:
    return np.random.default_rng([seed, cid]).uniform(-INPUT_CLIP, INPUT_CLIP, dim)


@dataclass(frozen=True)
class EncodedInputs:
    """Picklable ``client id -> words``: client ``cid``'s input, regenerated from
    ``(seed, cid)`` and quantized with its own rounding generator."""

    seed: int
    dim: int
    quant: Quantizer

    def __call__(self, cid: int) -> np.ndarray:
        x = _client_input(self.seed, cid, self.dim)
        return self.quant.encode(x, np.random.default_rng([self.seed, cid, 1]))


@dataclass
class SimulationRun:
    """A simulated round: the JSON-ready ``summary``, and the raw ``result`` and
    ``config`` (per-client, per-stage numbers for :mod:`secagg_rec.sim.cost_model`)."""

    summary: dict[str, Any]
    result: RoundResult
    config: SecAggConfig


def _peak_rss_mb(who: int) -> float:
    """Peak resident set size in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(who).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def simulate_round(
    spec: SimulationSpec,
    *,
    on_progress: Callable[[str, int, int], None] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Run one round and return its measurements as a JSON-ready dict.

    The dict has ``ok``, ``clients``, ``survivors``, ``neighbors``, ``threshold``,
    ``bits``, ``max_abs_error`` (decoded aggregate vs the float sum of the survivors'
    inputs), ``error_bound``, client/server seconds, bytes per client, ``stages``,
    ``workers`` and peak memory in MiB (``peak_rss_mb`` of this process,
    ``peak_rss_workers_mb`` of the largest worker process or None,
    ``peak_rss_total_mb`` this process plus every worker: an upper bound on the
    memory in use at any one time). A round that aborts has ``ok: false`` and
    ``reason``.

    Args:
        spec: what to simulate.
        on_progress: ``(stage, done, total)`` callback.
        workers: client worker processes (1: everything in this process); the result
            does not depend on it.

    Raises:
        ValueError: inconsistent parameters (e.g. threshold above ``k + 1``), or
            ``workers < 1``.
    """
    return run_simulation(spec, on_progress=on_progress, workers=workers).summary


def run_simulation(
    spec: SimulationSpec,
    *,
    on_progress: Callable[[str, int, int], None] | None = None,
    workers: int = 1,
) -> SimulationRun:
    """Like :func:`simulate_round`, but also return the raw :class:`RoundResult`."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"--workers must be an int >= 1, got {workers!r}")
    n = spec.clients
    neighbors, threshold, how = resolve_neighbors(spec)
    ids = tuple(range(1, n + 1))
    # Default ring: 32 bits (4-byte words) while that leaves >= 2**16 quantization
    # levels per client; wider only for very many clients.
    bits = spec.bits if spec.bits is not None else max(32, required_bits(n, DEFAULT_LEVELS))
    quant = Quantizer.fit(bits=bits, clip=INPUT_CLIP, max_clients=n)
    keys = (
        {c: SigningKey(private=np.random.default_rng([spec.seed, c, 7]).bytes(32)) for c in ids}
        if spec.authenticated
        else {}
    )
    config = SecAggConfig(
        session_id=np.random.default_rng([spec.seed, 0xC0FFEE]).bytes(16)
        if spec.seed is not None
        else os.urandom(16),
        client_ids=ids,
        threshold=threshold,
        neighbors=neighbors,  # type: ignore[arg-type]
        bits=bits,
        dim=spec.dim,
        authenticated=spec.authenticated,
        verify_keys={c: k.public for c, k in keys.items()},
    )
    dropped = choose_dropouts(spec)
    n_drop = len(dropped)
    dropouts = dict.fromkeys(dropped, spec.drop_stage)
    encoded = EncodedInputs(spec.seed, spec.dim, quant)

    t0 = time.perf_counter()
    if workers == 1:
        result: RoundResult = run_round(
            config,
            encoded,
            dropouts=dropouts,
            signing_keys=keys or None,
            on_progress=on_progress,
        )
        worker_peaks: list[float] = []
    else:
        from secagg_rec.secagg.driver import drive_round
        from secagg_rec.sim.pool import ProcessPoolClients

        with ProcessPoolClients(
            config, encoded, workers=workers, signing_keys=keys or None
        ) as pool:
            result = drive_round(config, pool, dropouts=dropouts, on_progress=on_progress)
        worker_peaks = pool.worker_peak_rss_mb
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {
        "ok": result.ok,
        "clients": n,
        "dim": spec.dim,
        "neighbors": config.k,
        "graph": "full" if config.graph.is_complete else "secagg+",
        "chosen_by": how,
        "threshold": threshold,
        "bits": bits,
        "authenticated": spec.authenticated,
        "dropout": spec.dropout,
        "drop_stage": spec.drop_stage,
        "dropped": n_drop,
        "survivors": len(result.survivors),
        "seed": spec.seed,
        "workers": workers,
    }
    if result.ok:
        assert result.aggregate is not None
        exact = np.zeros(spec.dim)
        for cid in result.survivors:
            exact += _client_input(spec.seed, cid, spec.dim)
        decoded = quant.decode_sum(result.aggregate)
        out["max_abs_error"] = float(np.max(np.abs(decoded - exact)))
        out["error_bound"] = quant.sum_error_bound(len(result.survivors))
    else:
        out["reason"] = result.error
        out["max_abs_error"] = None
    secs = np.array([result.client_seconds[c] for c in ids])
    active = np.array([result.bytes_up[c] > 0 for c in ids])
    out.update(
        {
            "client_seconds_mean": float(secs[active].mean()) if active.any() else 0.0,
            "client_seconds_max": float(secs.max()),
            "client_seconds_total": float(secs.sum()),
            "server_seconds": result.server_seconds,
            "wall_seconds": wall,
            "bytes_up_per_client": float(np.mean([result.bytes_up[c] for c in ids])),
            "bytes_down_per_client": float(np.mean([result.bytes_down[c] for c in ids])),
            "client_errors": len(result.client_errors),
            "peak_rss_mb": _peak_rss_mb(resource.RUSAGE_SELF),
            "peak_rss_workers_mb": max(worker_peaks) if worker_peaks else None,
            "peak_rss_total_mb": _peak_rss_mb(resource.RUSAGE_SELF) + sum(worker_peaks),
            "stages": [s.as_dict() for s in result.stages],
        }
    )
    if not math.isfinite(out["client_seconds_mean"]):
        out["client_seconds_mean"] = 0.0
    return SimulationRun(summary=out, result=result, config=config)
