"""Emulated network: run a real round with real sleeps for every transfer.

:func:`emulate_round` checks :mod:`secagg_rec.sim.cost_model` end to end. Every client
runs in its own thread; a message of ``b`` bytes to or from client ``c`` costs a real
``time.sleep(latency_c + b / bandwidth_c)``; the clients compute for real (the protocol
code, concurrently, so they contend for this machine's cores and the GIL), and the
server, in the calling thread, takes replies in the order they arrive and closes each
stage when every client still in the round has answered. The wall time is measured
with ``time.perf_counter``. With ``network.client_cores = P`` at most ``P`` clients
compute at once (a semaphore), which is what the model assumes for that setting; with
``None`` the threads compete freely. The per-client bandwidths and latencies are drawn exactly
as :func:`~secagg_rec.sim.cost_model.estimate_round_time` draws them for the same seed,
so the two can be compared draw for draw.

Keep emulations small (tens of clients, small ``dim``): the clients' compute runs in
threads of one process, so "one device per client" (``client_cores=None``) only holds
while network time dominates; use ``client_cores=1`` to check the model's compute part
too. Dropped clients are known to the server at once (no timeout).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from secagg_rec.errors import SecAggError, ThresholdError
from secagg_rec.secagg import codec
from secagg_rec.secagg.config import SecAggConfig
from secagg_rec.secagg.driver import STAGES, ClientReply, InputSource, LocalClients
from secagg_rec.secagg.server import ServerSession
from secagg_rec.sim.cost_model import NetworkModel, RoundProfile, StageProfile, draw_network

__all__ = ["VALIDATION_CASES", "EmulatedRound", "emulate_round", "validate_cost_model"]

_MAX_CLIENTS = 512


@dataclass
class EmulatedRound:
    """Outcome of :func:`emulate_round`.

    Attributes:
        ok: the server finished; ``aggregate`` is the survivors' sum mod ``2**bits``.
        wall_seconds: measured wall time of the whole round.
        stage_seconds: measured wall time per stage.
        uplink / downlink / latency: the per-client draws (bytes/s, seconds), in
            ``config.client_ids`` order.
        error: abort reason, if any.
        profile: the compute and bytes measured during the emulation itself, per
            client and stage (what the cost model takes).
    """

    ok: bool
    aggregate: np.ndarray | None
    survivors: tuple[int, ...]
    wall_seconds: float
    stage_seconds: list[float] = field(default_factory=list)
    uplink: np.ndarray | None = None
    downlink: np.ndarray | None = None
    latency: np.ndarray | None = None
    error: str | None = None
    profile: RoundProfile | None = None


def emulate_round(
    config: SecAggConfig,
    inputs: InputSource,
    network: NetworkModel,
    *,
    dropouts: Mapping[int, str] | None = None,
    seed: int = 0,
) -> EmulatedRound:
    """Run one round over an emulated network (module docstring).

    Args:
        config: the round (at most 512 clients).
        inputs: client id -> words (all produced before the clock starts).
        network: bandwidths, latency and ``client_cores``; ``server_bandwidth``,
            compute scales and ``stage_timeout`` are not emulated and must be left at
            their defaults.
        dropouts: client id -> stage at which it vanishes.
        seed: seeds the per-client network draws (as in ``estimate_round_time``).

    Raises:
        ValueError: too many clients, a bad dropout schedule, or network options the
            emulator does not implement.
    """
    from secagg_rec.secagg.driver import _validate_dropouts

    if config.n > _MAX_CLIENTS:
        raise ValueError(f"emulate at most {_MAX_CLIENTS} clients (one thread each)")
    if (
        network.server_bandwidth is not None
        or network.client_compute_scale != 1.0
        or network.server_compute_scale != 1.0
        or network.stage_timeout is not None
    ):
        raise ValueError("the emulator implements per-client links only: leave "
                         "server_bandwidth, compute scales and stage_timeout unset")
    if config.authenticated:
        raise ValueError("emulate_round does not take signing keys; use an "
                         "unauthenticated config")
    dropouts = dict(dropouts or {})
    _validate_dropouts(config, dropouts)
    get = inputs if callable(inputs) else inputs.__getitem__
    words = {cid: np.asarray(get(cid)) for cid in config.client_ids}
    up_bw, down_bw, lat = (a[0] for a in draw_network(network, 1, config.n, seed))
    row = {cid: i for i, cid in enumerate(config.client_ids)}
    index = {name: i for i, name in enumerate(STAGES)}
    runner = LocalClients(config, words)
    cores: Any = (
        contextlib.nullcontext() if network.client_cores is None
        else threading.BoundedSemaphore(network.client_cores)
    )
    server = ServerSession(config)

    def active(cid: int, stage: str) -> bool:
        drop = dropouts.get(cid)
        return drop is None or index[drop] > index[stage]

    def client_task(cid: int, stage: str, down: bytes) -> ClientReply:
        r = row[cid]
        if down:
            time.sleep(lat[r] + len(down) / down_bw[r])
        with cores:
            reply = next(runner.run_stage(stage, [(cid, down)]))
        if reply.up is not None:
            time.sleep(lat[r] + len(reply.up) / up_bw[r])
        return reply

    stage_seconds: list[float] = []
    measured: list[dict[int, tuple[float, int, int]]] = []
    receive_s: list[float] = []
    close_s: list[float] = [0.0] * len(STAGES)
    error: str | None = None
    outgoing: Mapping[int, object] = dict.fromkeys(config.client_ids)
    with ThreadPoolExecutor(max_workers=config.n) as pool:
        # start every thread before the clock does
        wait([pool.submit(time.sleep, 0.01) for _ in range(config.n)])
        t_start = time.perf_counter()
        try:
            for i, stage in enumerate(STAGES):
                t0 = time.perf_counter()
                encoded = {
                    cid: (b"" if msg is None else codec.encode(msg))  # type: ignore[arg-type]
                    for cid, msg in outgoing.items()
                }
                if i:  # encoding is the previous close's work, as in the driver
                    close_s[i - 1] += time.perf_counter() - t0
                pending = {
                    pool.submit(client_task, cid, stage, down)
                    for cid, down in encoded.items()
                    if active(cid, stage)
                }
                answers: dict[int, tuple[float, int, int]] = {}
                receive = 0.0
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        reply = fut.result()
                        if reply.up is not None:
                            cid = reply.client_id
                            answers[cid] = (reply.seconds, len(encoded[cid]), len(reply.up))
                            t1 = time.perf_counter()
                            with contextlib.suppress(SecAggError):
                                server.receive_bytes(reply.up)
                            receive += time.perf_counter() - t1
                measured.append(answers)
                receive_s.append(receive)
                t1 = time.perf_counter()
                outgoing = server.close_stage()
                close_s[i] += time.perf_counter() - t1
                stage_seconds.append(time.perf_counter() - t0)
        except ThresholdError as exc:
            error = str(exc)
    wall = time.perf_counter() - t_start
    ok = error is None and server.result is not None
    stages = []
    expected = config.n
    for i, answers in enumerate(measured):
        ids = sorted(answers)
        stages.append(StageProfile(
            name=STAGES[i],
            rows=np.array([row[c] for c in ids], dtype=np.int64),
            compute=np.array([answers[c][0] for c in ids]),
            down=np.array([answers[c][1] for c in ids], dtype=np.float64),
            up=np.array([answers[c][2] for c in ids], dtype=np.float64),
            server_receive=receive_s[i],
            server_close=close_s[i],
            missing=max(0, expected - len(ids)),
        ))
        expected = len(ids)
    return EmulatedRound(
        ok=ok,
        aggregate=server.result if ok else None,
        survivors=server.survivors if ok else (),
        wall_seconds=wall,
        stage_seconds=stage_seconds,
        uplink=up_bw,
        downlink=down_bw,
        latency=lat,
        error=error,
        profile=RoundProfile(n=config.n, stages=tuple(stages)),
    )


#: Rounds :func:`validate_cost_model` emulates: (clients, neighbours, dim, uplink,
#: downlink, latency), the network in :func:`~secagg_rec.sim.cost_model.parse_distribution`
#: syntax. From slow links (the network dominates) to faster ones (compute matters).
VALIDATION_CASES: tuple[tuple[int, int | str, int, str, str, str], ...] = (
    (8, 4, 500, "1Mbps", "4Mbps", "uniform:50ms:100ms"),
    (16, 6, 2000, "lognormal:2Mbps:0.7", "lognormal:10Mbps:0.7", "uniform:20ms:80ms"),
    (24, "full", 1000, "5Mbps", "20Mbps", "30ms"),
    (32, 8, 5000, "10Mbps", "50Mbps", "20ms"),
)


def validate_cost_model(
    cases: tuple[tuple[int, int | str, int, str, str, str], ...] = VALIDATION_CASES,
    *,
    seeds: int = 3,
    client_cores: int | None = 1,
) -> list[dict[str, object]]:
    """Predict and emulate each case ``seeds`` times; return one row per run.

    Each row: the case, ``seed``, ``emulated_s`` (measured wall time),
    ``predicted_s`` and ``error`` (the model given the compute and bytes measured in
    that emulation; relative, signed: predicted / emulated - 1: this checks how the
    model combines network, compute and the server), ``predicted_ahead_s`` and
    ``error_ahead`` (the model given a separate in-memory run made beforehand, as a
    user would: adds the drift of a shared machine's speed between the two runs),
    and ``network_share`` (1 - compute on the critical path / predicted). One client
    drops before its masked input.
    ``client_cores`` is given to both the model and the emulator (default 1: the
    emulated clients compute one at a time, as they must on this machine).
    """
    from secagg_rec.secagg.driver import run_round
    from secagg_rec.sim.cost_model import estimate_round_time, parse_distribution

    rows: list[dict[str, object]] = []
    for n, k, dim, up, down, latency in cases:
        config = SecAggConfig(
            session_id=bytes([n]) * 16,
            client_ids=tuple(range(1, n + 1)),
            threshold=3,
            neighbors=k,  # type: ignore[arg-type]
            bits=32,
            dim=dim,
        )
        rng = np.random.default_rng(n)
        inputs = {c: rng.integers(0, 1 << 32, dim, dtype=np.uint64)
                  for c in config.client_ids}
        drops = {2: "masked"}
        net = NetworkModel(uplink=parse_distribution(up, "rate"),
                           downlink=parse_distribution(down, "rate"),
                           latency=parse_distribution(latency, "duration"),
                           client_cores=client_cores)
        run_round(config, inputs, dropouts=drops)  # warm up
        profile = run_round(config, inputs, dropouts=drops)
        for seed in range(seeds):
            emu = emulate_round(config, inputs, net, dropouts=drops, seed=seed)
            assert emu.profile is not None
            own = estimate_round_time(emu.profile, net, samples=1, seed=seed,
                                      compute="measured")
            ahead = estimate_round_time(profile, net, client_ids=config.client_ids, samples=1,
                                        seed=seed)
            rows.append({
                "clients": n, "neighbors": str(k), "dim": dim, "uplink": up,
                "downlink": down, "latency": latency, "client_cores": client_cores,
                "seed": seed, "ok": emu.ok, "emulated_s": emu.wall_seconds,
                "predicted_s": own.seconds,
                "error": own.seconds / emu.wall_seconds - 1,
                "predicted_ahead_s": ahead.seconds,
                "error_ahead": ahead.seconds / emu.wall_seconds - 1,
                "network_share": 1 - own.compute_only_seconds / own.seconds,
            })
    return rows
