"""Emulated network: run a real round with real sleeps for every transfer.

:func:`emulate_round` checks :mod:`secagg_rec.sim.cost_model` end to end. Every client
runs in its own thread; a message of ``b`` bytes to or from client ``c`` costs a real
``time.sleep(latency_c + b / bandwidth_c)``; the clients compute for real (the protocol
code, concurrently, so they contend for this machine's cores and the GIL), and the
server, in the calling thread, takes replies in the order they arrive and closes each
stage when every client still in the round has answered. The wall time is measured
with ``time.perf_counter``. The per-client bandwidths and latencies are drawn exactly
as :func:`~secagg_rec.sim.cost_model.estimate_round_time` draws them for the same seed,
so the two can be compared draw for draw.

Keep emulations small (tens of clients, small ``dim``): the clients' compute runs in
threads of one process, so it only matches the model's "one device per client" when
network time dominates. Dropped clients are known to the server at once (no timeout).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from secagg_rec.errors import SecAggError, ThresholdError
from secagg_rec.secagg import codec
from secagg_rec.secagg.config import SecAggConfig
from secagg_rec.secagg.driver import STAGES, ClientReply, InputSource, LocalClients
from secagg_rec.secagg.server import ServerSession
from secagg_rec.sim.cost_model import NetworkModel, draw_network

__all__ = ["EmulatedRound", "emulate_round"]

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
        network: bandwidths and latency; ``server_bandwidth``, compute scales and
            ``stage_timeout`` are not emulated and must be left at their defaults.
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
    server = ServerSession(config)

    def active(cid: int, stage: str) -> bool:
        drop = dropouts.get(cid)
        return drop is None or index[drop] > index[stage]

    def client_task(cid: int, stage: str, down: bytes) -> ClientReply:
        r = row[cid]
        if down:
            time.sleep(lat[r] + len(down) / down_bw[r])
        reply = next(runner.run_stage(stage, [(cid, down)]))
        if reply.up is not None:
            time.sleep(lat[r] + len(reply.up) / up_bw[r])
        return reply

    stage_seconds: list[float] = []
    error: str | None = None
    outgoing: Mapping[int, object] = dict.fromkeys(config.client_ids)
    with ThreadPoolExecutor(max_workers=config.n) as pool:
        # start every thread before the clock does
        wait([pool.submit(time.sleep, 0.01) for _ in range(config.n)])
        t_start = time.perf_counter()
        try:
            for stage in STAGES:
                t0 = time.perf_counter()
                encoded = {
                    cid: (b"" if msg is None else codec.encode(msg))  # type: ignore[arg-type]
                    for cid, msg in outgoing.items()
                }
                pending = {
                    pool.submit(client_task, cid, stage, down)
                    for cid, down in encoded.items()
                    if active(cid, stage)
                }
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        reply = fut.result()
                        if reply.up is not None:
                            with contextlib.suppress(SecAggError):
                                server.receive_bytes(reply.up)
                outgoing = server.close_stage()
                stage_seconds.append(time.perf_counter() - t0)
        except ThresholdError as exc:
            error = str(exc)
    wall = time.perf_counter() - t_start
    ok = error is None and server.result is not None
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
    )
