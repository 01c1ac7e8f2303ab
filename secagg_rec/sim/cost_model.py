"""A network cost model: a round's wall time from measured bytes and compute.

An in-memory round (:func:`~secagg_rec.secagg.driver.run_round`) measures, for every
client and stage, the compute seconds and the bytes sent each way, and the server's
seconds per stage. This module adds a network: per-client uplink and downlink
bandwidth and one-way latency, each a constant or a distribution, and computes when
each stage would end in a deployment where every client has its own device.

The model, per stage ``s`` starting at time ``T`` (the previous stage's end):

1. The server's message to client ``c`` (``down`` bytes) arrives at
   ``T + latency_c + down / downlink_c`` (no message, no delay, for the first stage;
   with a ``server_bandwidth`` the server's sends also queue on its own link, in
   client order).
2. The client computes for ``compute_c * client_compute_scale`` seconds (on its own
   device; with ``client_cores = P``, the clients instead share ``P`` cores, first come
   first served, as when many simulated clients run on one machine) and its reply
   (``up`` bytes) reaches the server ``latency_c + up / uplink_c`` later (queued on the
   server's link if ``server_bandwidth`` is set).
3. The server takes replies in arrival order, each costing the stage's measured
   receive time per reply (times ``server_compute_scale``); it waits for every
   client that answers, and, if some client never answers (a dropout), at least
   until ``T + stage_timeout`` when a timeout is set.
4. It then closes the stage and encodes the next stage's messages (the rest of the
   stage's measured server seconds). That is the stage's end.

The round time is the last stage's end. With distributions, per-client parameters
are drawn ``samples`` times and the median and 10th/90th percentiles are reported.

What the model leaves out: transport framing, TLS and TCP slow start, the server's
per-connection overhead, client compute on a device slower or faster than the machine
that measured it (use ``client_compute_scale``), and jitter within a transfer. Its
error against emulated runs (real sleeps for the network and the real protocol code,
:func:`~secagg_rec.sim.emulate.emulate_round`) is measured in the tests and stated in
``docs/simulation.md``.

Units: bandwidths in bytes per second, times in seconds. :func:`parse_rate`,
:func:`parse_duration` and :func:`parse_distribution` read strings such as
``"10Mbps"``, ``"50ms"``, ``"lognormal:20Mbps:0.8"`` for the command line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from secagg_rec.secagg.driver import RoundResult

__all__ = [
    "Choice",
    "Constant",
    "CostEstimate",
    "LogNormal",
    "NetworkModel",
    "RoundProfile",
    "StageProfile",
    "Uniform",
    "draw_network",
    "estimate_round_time",
    "parse_distribution",
    "parse_duration",
    "parse_rate",
]


# ------------------------------------------------------------------ distributions


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, "
                         f"got {value}")
    return value


@dataclass(frozen=True)
class Constant:
    """The same value for every client."""

    value: float

    def sample(self, rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
        return np.full(size, self.value, dtype=np.float64)

    def describe(self) -> str:
        return f"{self.value:g}"


@dataclass(frozen=True)
class Uniform:
    """Uniform on ``[low, high]``."""

    low: float
    high: float

    def sample(self, rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
        return rng.uniform(self.low, self.high, size)

    def describe(self) -> str:
        return f"uniform({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class LogNormal:
    """Log-normal with the given median and ``sigma`` (std. dev. of the log)."""

    median: float
    sigma: float

    def sample(self, rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
        return self.median * np.exp(self.sigma * rng.standard_normal(size))

    def describe(self) -> str:
        return f"lognormal(median={self.median:g}, sigma={self.sigma:g})"


@dataclass(frozen=True)
class Choice:
    """Each client gets one of ``values``, uniformly (e.g. a measured population)."""

    values: tuple[float, ...]

    def sample(self, rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
        return rng.choice(np.asarray(self.values, dtype=np.float64), size)

    def describe(self) -> str:
        return "choice(" + ", ".join(f"{v:g}" for v in self.values) + ")"


Distribution = Constant | Uniform | LogNormal | Choice


def _as_distribution(name: str, value: Any, *, allow_zero: bool) -> Distribution:
    if isinstance(value, (Constant, Uniform, LogNormal, Choice)):
        if isinstance(value, Constant):
            _positive(name, value.value, allow_zero=allow_zero)
        elif isinstance(value, Uniform):
            lo = _positive(f"{name} low", value.low, allow_zero=allow_zero)
            if _positive(f"{name} high", value.high, allow_zero=allow_zero) < lo:
                raise ValueError(f"{name}: uniform needs low <= high")
        elif isinstance(value, LogNormal):
            _positive(f"{name} median", value.median)
            _positive(f"{name} sigma", value.sigma, allow_zero=True)
        else:
            if not value.values:
                raise ValueError(f"{name}: choice needs at least one value")
            for v in value.values:
                _positive(name, v, allow_zero=allow_zero)
        return value
    return Constant(_positive(name, value, allow_zero=allow_zero))


# ---------------------------------------------------------------------- parsing

_RATE_UNITS = {
    "bps": 1 / 8, "kbps": 1e3 / 8, "mbps": 1e6 / 8, "gbps": 1e9 / 8,
    "b/s": 1.0, "kb/s": 1e3, "mb/s": 1e6, "gb/s": 1e9,
}
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def parse_rate(text: str) -> float:
    """``"10Mbps"`` -> bytes per second (1.25e6). Units: bps, kbps, Mbps, Gbps (bits,
    decimal) or B/s, kB/s, MB/s, GB/s (bytes, decimal; case-insensitive, so a rate in
    bytes must be written with ``/s``). Raises ValueError if unreadable or not > 0."""
    m = re.fullmatch(_NUMBER + r"\s*([a-zA-Z/]+)", text.strip())
    if not m or m.group(2).lower() not in _RATE_UNITS:
        raise ValueError(
            f"cannot read bandwidth {text!r}: use a number and one of bps, kbps, Mbps, Gbps, "
            "B/s, kB/s, MB/s, GB/s (e.g. 20Mbps)"
        )
    return _positive("bandwidth", float(m.group(1)) * _RATE_UNITS[m.group(2).lower()])


def parse_duration(text: str) -> float:
    """``"50ms"`` -> 0.05 seconds. Units: s, ms, us; a bare number is seconds. Raises
    ValueError if unreadable or negative."""
    m = re.fullmatch(_NUMBER + r"\s*([a-zA-Z]*)", text.strip())
    unit = (m.group(2) or "s").lower() if m else ""
    if not m or unit not in _TIME_UNITS:
        raise ValueError(f"cannot read duration {text!r}: use e.g. 50ms, 0.2s, 800us")
    return _positive("duration", float(m.group(1)) * _TIME_UNITS[unit], allow_zero=True)


def parse_distribution(text: str, kind: str) -> Distribution:
    """Read a constant or a distribution of rates (``kind="rate"``) or durations
    (``kind="duration"``).

    Forms: ``VALUE`` (constant), ``uniform:LOW:HIGH``, ``lognormal:MEDIAN:SIGMA``
    (``SIGMA`` unitless, std. dev. of the log), ``choice:V1,V2,...``. Example:
    ``lognormal:20Mbps:0.8``; ``uniform:20ms:200ms``.

    Raises:
        ValueError: unreadable text or a bad ``kind``.
    """
    if kind not in ("rate", "duration"):
        raise ValueError(f"kind must be 'rate' or 'duration', got {kind!r}")
    parse = parse_rate if kind == "rate" else parse_duration
    parts = text.strip().split(":")
    head = parts[0].lower()
    if len(parts) == 1:
        return Constant(parse(parts[0]))
    if head == "uniform" and len(parts) == 3:
        return _as_distribution(text, Uniform(parse(parts[1]), parse(parts[2])), allow_zero=True)
    if head == "lognormal" and len(parts) == 3:
        try:
            sigma = float(parts[2])
        except ValueError:
            raise ValueError(f"{text!r}: lognormal sigma must be a number") from None
        return _as_distribution(text, LogNormal(parse(parts[1]), sigma), allow_zero=False)
    if head == "choice" and len(parts) == 2:
        return Choice(tuple(parse(v) for v in parts[1].split(",") if v.strip()))
    raise ValueError(
        f"cannot read {text!r}: use VALUE, uniform:LOW:HIGH, lognormal:MEDIAN:SIGMA or "
        "choice:V1,V2,..."
    )


# ------------------------------------------------------------------------ model


@dataclass(frozen=True)
class NetworkModel:
    """Per-client network, and the deployment's compute speed relative to this machine.

    Args:
        uplink: client -> server bandwidth, bytes/s (a number or a distribution).
        downlink: server -> client bandwidth, bytes/s.
        latency: one-way latency, seconds (each message pays it once).
        server_bandwidth: the server's own link, bytes/s, shared by all clients
            (``None``: not a bottleneck).
        client_compute_scale: client compute seconds = measured x this (e.g. 4 for a
            phone four times slower than the measuring machine).
        server_compute_scale: the same for the server.
        stage_timeout: seconds the server waits for missing clients before closing a
            stage (``None``: it closes as soon as every client that will answer has).
        client_cores: ``None`` (default): every client computes on its own device.
            ``P``: all clients share ``P`` cores, each client's stage work running
            whole on the first free core, in order of arrival (simulated clients on
            one machine, e.g. :func:`~secagg_rec.sim.emulate.emulate_round`).

    Raises:
        TypeError / ValueError: non-positive bandwidths, negative latency or scales.
    """

    uplink: Any
    downlink: Any
    latency: Any = 0.0
    server_bandwidth: float | None = None
    client_compute_scale: float = 1.0
    server_compute_scale: float = 1.0
    stage_timeout: float | None = None
    client_cores: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "uplink", _as_distribution("uplink", self.uplink,
                                                            allow_zero=False))
        object.__setattr__(self, "downlink", _as_distribution("downlink", self.downlink,
                                                              allow_zero=False))
        object.__setattr__(self, "latency", _as_distribution("latency", self.latency,
                                                             allow_zero=True))
        if self.server_bandwidth is not None:
            _positive("server_bandwidth", self.server_bandwidth)
        _positive("client_compute_scale", self.client_compute_scale, allow_zero=True)
        _positive("server_compute_scale", self.server_compute_scale, allow_zero=True)
        if self.stage_timeout is not None:
            _positive("stage_timeout", self.stage_timeout, allow_zero=True)
        if self.client_cores is not None and (
            not isinstance(self.client_cores, int) or self.client_cores < 1
        ):
            raise ValueError(f"client_cores must be None or an int >= 1, got {self.client_cores!r}")

    @property
    def random(self) -> bool:
        """True if some per-client parameter is a distribution."""
        return not all(isinstance(d, Constant) for d in (self.uplink, self.downlink,
                                                           self.latency))

    def describe(self) -> dict[str, Any]:
        return {
            "uplink_bytes_per_s": self.uplink.describe(),
            "downlink_bytes_per_s": self.downlink.describe(),
            "latency_s": self.latency.describe(),
            "server_bandwidth_bytes_per_s": self.server_bandwidth,
            "client_compute_scale": self.client_compute_scale,
            "server_compute_scale": self.server_compute_scale,
            "stage_timeout_s": self.stage_timeout,
            "client_cores": self.client_cores,
        }


@dataclass(frozen=True)
class StageProfile:
    """Measured work of one stage.

    Attributes:
        name: stage name.
        rows: row of each answering client in the round's client order (int array).
        compute: client compute seconds, per answering client.
        down / up: bytes received / sent, per answering client.
        server_receive: server seconds spent taking this stage's replies (total).
        server_close: the rest of the server's seconds for the stage (close + encode).
        missing: clients sent this stage's message (or selected, for the first
            stage) that never answered.
    """

    name: str
    rows: np.ndarray
    compute: np.ndarray
    down: np.ndarray
    up: np.ndarray
    server_receive: float
    server_close: float
    missing: int


@dataclass(frozen=True)
class RoundProfile:
    """What a round costs apart from the network: per-stage, per-client measurements."""

    n: int
    stages: tuple[StageProfile, ...]

    @classmethod
    def from_result(cls, result: RoundResult, client_ids: Sequence[int]) -> RoundProfile:
        """Build from a :class:`RoundResult` (needs its ``client_stages``).

        Raises:
            ValueError: the result has no per-client stage data.
        """
        if not result.client_stages:
            raise ValueError("the RoundResult has no client_stages (made by an old driver?)")
        row = {cid: i for i, cid in enumerate(client_ids)}
        stages = []
        expected = len(client_ids)
        for st in result.stages:
            data: Mapping[int, tuple[float, int, int]] = result.client_stages.get(st.name, {})
            ids = sorted(data)
            stages.append(
                StageProfile(
                    name=st.name,
                    rows=np.array([row[c] for c in ids], dtype=np.int64),
                    compute=np.array([data[c][0] for c in ids], dtype=np.float64),
                    down=np.array([data[c][1] for c in ids], dtype=np.float64),
                    up=np.array([data[c][2] for c in ids], dtype=np.float64),
                    server_receive=st.server_receive_seconds,
                    server_close=max(0.0, st.server_seconds - st.server_receive_seconds),
                    missing=max(0, expected - len(ids)),
                )
            )
            expected = len(ids)
        return cls(n=len(client_ids), stages=tuple(stages))


@dataclass
class CostEstimate:
    """A round's estimated wall time.

    Attributes:
        seconds: median over the network draws of the round's wall time.
        p10 / p90 / mean: spread over the draws (equal to ``seconds`` when every
            parameter is constant).
        compute_only_seconds: the same round with an instant network (the compute
            on the critical path: slowest client per stage plus the server).
        stages: per stage, medians of ``seconds`` (its duration), ``client_network``
            (network time of the client that finished last), ``client_compute``
            (its compute) and ``server`` (server seconds after the last reply).
        samples: network draws.
        network: the model's parameters.
    """

    seconds: float
    p10: float
    p90: float
    mean: float
    compute_only_seconds: float
    stages: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 1
    network: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "p10": self.p10,
            "p90": self.p90,
            "mean": self.mean,
            "compute_only_seconds": self.compute_only_seconds,
            "stages": self.stages,
            "samples": self.samples,
            "network": self.network,
        }


def _fifo(arrivals: np.ndarray, service: np.ndarray) -> np.ndarray:
    """Completion times of a FIFO queue, row by row (arrivals sorted along axis 1).

    ``c_i = max(a_i, c_{i-1}) + s_i = S_i + max_{j <= i}(a_j - S_{j-1})`` with ``S`` the
    prefix sums of the service times.
    """
    s = np.cumsum(service, axis=1)
    s_prev = s - service
    return s + np.maximum.accumulate(arrivals - s_prev, axis=1)


def _shared_cores(arrive: np.ndarray, work: np.ndarray, cores: int) -> np.ndarray:
    """Finish times of jobs (per row) on ``cores`` FIFO servers, each job whole on the
    first core to free up."""
    import heapq

    done = np.empty_like(arrive)
    for r in range(arrive.shape[0]):
        free = [0.0] * cores
        for j in np.argsort(arrive[r], kind="stable"):
            start = max(arrive[r, j], heapq.heappop(free))
            done[r, j] = start + work[r, j]
            heapq.heappush(free, done[r, j])
    return done


def _simulate(
    profile: RoundProfile,
    network: NetworkModel,
    up_bw: np.ndarray,
    down_bw: np.ndarray,
    latency: np.ndarray,
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Round end per draw (rows of the parameter arrays) and per-stage parts."""
    draws = up_bw.shape[0]
    t = np.zeros(draws)
    parts: list[dict[str, np.ndarray]] = []
    cs, ss = network.client_compute_scale, network.server_compute_scale
    sbw = network.server_bandwidth
    for st in profile.stages:
        start = t.copy()
        m = st.rows.size
        close = st.server_close * ss
        if m == 0:
            t = start + close
            parts.append({"seconds": t - start, "client_network": np.zeros(draws),
                          "client_compute": np.zeros(draws), "server": t - start})
            continue
        lat = latency[:, st.rows]
        has_down = st.down > 0
        down_time = np.where(has_down, lat + st.down / down_bw[:, st.rows], 0.0)
        if sbw is not None:  # the server's sends queue on its link, in client order
            sent = np.cumsum(np.broadcast_to(st.down / sbw, (draws, m)), axis=1)
            down_time = np.where(has_down, np.maximum(down_time, sent + lat), 0.0)
        compute = np.broadcast_to(st.compute * cs, (draws, m))
        up_time = lat + st.up / up_bw[:, st.rows]
        if network.client_cores is None:
            computed = down_time + compute
        else:
            computed = _shared_cores(down_time, compute, network.client_cores)
        ready = computed + up_time  # reply fully at the server (own link)
        order = np.argsort(ready, axis=1)
        arrive = np.take_along_axis(ready, order, axis=1)
        if sbw is not None:  # replies also queue on the server's link
            serv = np.take_along_axis(np.broadcast_to(st.up / sbw, (draws, m)), order, axis=1)
            arrive = _fifo(arrive - serv, serv)
        per_reply = st.server_receive * ss / m
        done = _fifo(arrive, np.full((draws, m), per_reply))[:, -1]
        if network.stage_timeout is not None and st.missing:
            done = np.maximum(done, network.stage_timeout)
        t = start + done + close
        last = order[:, -1]
        rows = np.arange(draws)
        parts.append({
            "seconds": t - start,
            "client_network": (down_time + up_time)[rows, last],
            "client_compute": (computed - down_time)[rows, last],
            "server": t - start - ready[rows, last],
        })
    return t, parts


def draw_network(
    network: NetworkModel, samples: int, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-client ``(uplink, downlink, latency)``, each ``samples x n``, drawn from
    ``network`` with ``seed`` (the draws :func:`estimate_round_time` uses; row 0 with
    ``samples=1`` is what :func:`~secagg_rec.sim.emulate.emulate_round` gives client
    ``client_ids[i]`` in column ``i``)."""
    rng = np.random.default_rng(seed)
    size = (samples, n)
    return (
        network.uplink.sample(rng, size),
        network.downlink.sample(rng, size),
        network.latency.sample(rng, size),
    )


def estimate_round_time(
    profile: RoundProfile | RoundResult,
    network: NetworkModel,
    *,
    client_ids: Sequence[int] | None = None,
    samples: int | None = None,
    seed: int = 0,
    compute: str = "median",
) -> CostEstimate:
    """Estimate the round's wall time under ``network`` (see the module docstring).

    Args:
        profile: a :class:`RoundProfile`, or a :class:`RoundResult` together with
            ``client_ids`` (the config's order).
        network: bandwidths, latency, scales.
        client_ids: needed with a ``RoundResult``.
        samples: network draws (default 1 if every parameter is constant, else 200).
        seed: seeds the draws.
        compute: ``"median"`` (default): every client of a stage computes for the
            stage's median measured time: robust to a measuring machine that other
            work interrupts, and right when all clients of a stage do the same work
            (they do, up to their number of live neighbours). ``"measured"``: each
            client's own measured seconds (a stage's maximum then picks up any
            interruption of the measuring machine).

    Returns:
        A :class:`CostEstimate`.

    Raises:
        TypeError: ``profile`` of the wrong type.
        ValueError: ``samples < 1``, a bad ``compute``, or a ``RoundResult`` without
            ``client_ids``.
    """
    if isinstance(profile, RoundResult):
        if client_ids is None:
            raise ValueError("estimating from a RoundResult needs client_ids")
        profile = RoundProfile.from_result(profile, client_ids)
    if not isinstance(profile, RoundProfile):
        raise TypeError(f"profile must be a RoundProfile or RoundResult, got {type(profile)}")
    if not isinstance(network, NetworkModel):
        raise TypeError(f"network must be a NetworkModel, got {type(network).__name__}")
    if compute not in ("median", "measured"):
        raise ValueError(f"compute must be 'median' or 'measured', got {compute!r}")
    if compute == "median":
        profile = RoundProfile(
            n=profile.n,
            stages=tuple(
                replace(st, compute=np.full_like(st.compute, np.median(st.compute)))
                if st.compute.size
                else st
                for st in profile.stages
            ),
        )
    if samples is None:
        samples = 200 if network.random else 1
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an int >= 1, got {samples!r}")
    up, down, lat = draw_network(network, samples, profile.n, seed)
    total, parts = _simulate(profile, network, up, down, lat)
    inf = np.full((1, profile.n), np.inf)
    instant = NetworkModel(uplink=1.0, downlink=1.0, latency=0.0,
                           client_compute_scale=network.client_compute_scale,
                           server_compute_scale=network.server_compute_scale,
                           stage_timeout=network.stage_timeout,
                           client_cores=network.client_cores)
    compute_only, _ = _simulate(profile, instant, inf, inf, np.zeros((1, profile.n)))
    stages = [
        {"name": st.name, **{k: float(np.median(v)) for k, v in part.items()}}
        for st, part in zip(profile.stages, parts, strict=True)
    ]
    return CostEstimate(
        seconds=float(np.median(total)),
        p10=float(np.percentile(total, 10)),
        p90=float(np.percentile(total, 90)),
        mean=float(total.mean()),
        compute_only_seconds=float(compute_only[0]),
        stages=stages,
        samples=samples,
        network={**network.describe(), "compute": compute},
    )

