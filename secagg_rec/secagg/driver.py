"""In-memory driver: run one round for N clients and a server, with dropouts.

Every message goes through the real codec (encoded by the sender, decoded by the
receiver), so the byte counts are what a network would carry (payload only, no
transport framing). Time is measured per party with ``time.perf_counter`` around the
calls each party makes, including encoding and decoding.

Stages, and what "dropping at" a stage means (the client sends nothing from then on
and does no more work):

=============  ====================================  ====================================
stage          server -> client                      client -> server
=============  ====================================  ====================================
advertise      (round start)                         AdvertiseKeys
share          KeyBroadcast                          ShareKeys
masked         ShareBroadcast                        MaskedInput
consistency    ConsistencyRequest                    ConsistencyResponse
unmask         UnmaskRequest                         UnmaskResponse
=============  ====================================  ====================================

Inputs may be given as a mapping or as a function ``client_id -> words``, called only
when the client's masked input is due, so a simulation of many clients holds one input
vector at a time; the server's running sum is the only other O(dim) state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from secagg_rec.crypto.keys import SigningKey
from secagg_rec.crypto.random import RandomSource
from secagg_rec.errors import SecAggError, ThresholdError
from secagg_rec.secagg import codec
from secagg_rec.secagg.client import ClientSession
from secagg_rec.secagg.config import SecAggConfig
from secagg_rec.secagg.server import ServerSession

__all__ = ["STAGES", "RoundResult", "StageStats", "run_round"]

STAGES: tuple[str, ...] = ("advertise", "share", "masked", "consistency", "unmask")

InputSource = Mapping[int, np.ndarray] | Callable[[int], np.ndarray]
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class StageStats:
    """Measurements of one stage (seconds and bytes, summed over clients)."""

    name: str
    clients: int = 0  # clients that sent this stage's message
    client_seconds: float = 0.0
    client_seconds_max: float = 0.0
    server_seconds: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0

    def as_dict(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)


@dataclass
class RoundResult:
    """What a round produced.

    Attributes:
        ok: the server finished and ``aggregate`` is the survivors' sum.
        aggregate: words of Z_{2^bits}, or ``None`` if the round aborted.
        survivors: clients whose inputs are in the sum.
        error: the abort reason (``ThresholdError`` text) when not ``ok``.
        stages: per-stage measurements, in protocol order.
        client_seconds: total compute seconds per client id.
        bytes_up / bytes_down: payload bytes per client id.
        client_errors: client id -> why that client gave up (e.g. too few peers).
        rejected: messages the server refused, ``(client id, reason)``.
    """

    ok: bool
    aggregate: np.ndarray | None
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    error: str | None
    stages: list[StageStats]
    client_seconds: dict[int, float]
    server_seconds: float
    bytes_up: dict[int, int]
    bytes_down: dict[int, int]
    client_errors: dict[int, str] = field(default_factory=dict)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _validate_dropouts(config: SecAggConfig, dropouts: Mapping[int, str]) -> None:
    for cid, stage in dropouts.items():
        if cid not in config.id_set:
            raise ValueError(f"dropout schedule names client {cid}, not in the round")
        if stage not in STAGES:
            raise ValueError(f"unknown dropout stage {stage!r}; expected one of {STAGES}")


def run_round(
    config: SecAggConfig,
    inputs: InputSource,
    *,
    dropouts: Mapping[int, str] | None = None,
    rng_factory: Callable[[int], RandomSource] | None = None,
    signing_keys: Mapping[int, SigningKey] | None = None,
    on_progress: ProgressCallback | None = None,
) -> RoundResult:
    """Run one round in memory.

    Args:
        config: the round configuration.
        inputs: client id -> words (``dim`` ints in ``[0, 2**bits)``), as a mapping or
            a function called once per client when its masked input is due.
        dropouts: client id -> stage at which it vanishes (see module docstring).
        rng_factory: client id -> random source (default: OS CSPRNG for everyone).
        signing_keys: client id -> Ed25519 key, required in authenticated mode.
        on_progress: called as ``(stage, done, total)`` while clients are processed.

    Returns:
        A :class:`RoundResult`; a round that aborts for lack of clients returns
        ``ok=False`` with the reason rather than raising.

    Raises:
        ValueError: a bad dropout schedule or missing signing keys (before any work).
    """
    dropouts = dict(dropouts or {})
    _validate_dropouts(config, dropouts)
    if config.authenticated and (
        signing_keys is None or any(c not in signing_keys for c in config.client_ids)
    ):
        raise ValueError("authenticated mode needs a signing key for every client")
    get_input = inputs if callable(inputs) else inputs.__getitem__
    stage_index = {name: i for i, name in enumerate(STAGES)}

    def active(cid: int, stage: str) -> bool:
        drop = dropouts.get(cid)
        return drop is None or stage_index[drop] > stage_index[stage]

    server = ServerSession(config)
    clients: dict[int, ClientSession] = {}
    client_seconds = dict.fromkeys(config.client_ids, 0.0)
    bytes_up = dict.fromkeys(config.client_ids, 0)
    bytes_down = dict.fromkeys(config.client_ids, 0)
    client_errors: dict[int, str] = {}
    stats = [StageStats(name) for name in STAGES]
    server_seconds = 0.0
    error: str | None = None

    def deliver(stage: str, outgoing: dict[int, bytes]) -> None:
        """Feed server->client bytes to clients; forward replies to the server."""
        nonlocal server_seconds
        st = stats[stage_index[stage]]
        total = len(outgoing)
        for done, (cid, down) in enumerate(outgoing.items(), 1):
            if on_progress is not None:
                on_progress(stage, done, total)
            if not active(cid, stage):
                continue
            client = clients[cid]
            if stage == "masked":  # producing the input is the caller's work, not timed
                words = get_input(cid)
            t0 = time.perf_counter()
            try:
                if stage == "advertise":
                    up = codec.encode(client.start())
                else:
                    if stage == "masked":
                        client.set_input(words)
                    up = client.receive_bytes(down)
            except SecAggError as exc:
                client_errors[cid] = f"{type(exc).__name__}: {exc}"
                continue
            finally:
                dt = time.perf_counter() - t0
                client_seconds[cid] += dt
                st.client_seconds += dt
                st.client_seconds_max = max(st.client_seconds_max, dt)
            bytes_down[cid] += len(down)
            bytes_up[cid] += len(up)
            st.bytes_down += len(down)
            st.bytes_up += len(up)
            st.clients += 1
            t0 = time.perf_counter()
            try:
                server.receive_bytes(up)
            except SecAggError:
                pass  # recorded in server.rejected
            finally:
                dt = time.perf_counter() - t0
                server_seconds += dt
                st.server_seconds += dt

    def close(stage: str) -> dict[int, bytes]:
        nonlocal server_seconds
        t0 = time.perf_counter()
        try:
            out = {cid: codec.encode(msg) for cid, msg in server.close_stage().items()}
        finally:
            dt = time.perf_counter() - t0
            server_seconds += dt
            stats[stage_index[stage]].server_seconds += dt
        return out

    for cid in config.client_ids:
        clients[cid] = ClientSession(
            config,
            cid,
            rng=rng_factory(cid) if rng_factory else None,
            signing_key=signing_keys[cid] if signing_keys else None,
        )
    try:
        outgoing: dict[int, bytes] = dict.fromkeys(config.client_ids, b"")
        for stage in STAGES:
            deliver(stage, outgoing)
            outgoing = close(stage)
    except ThresholdError as exc:
        error = str(exc)
    ok = error is None and server.result is not None
    return RoundResult(
        ok=ok,
        aggregate=server.result if ok else None,
        survivors=server.survivors if ok else (),
        dropped=server.dropped if ok else (),
        error=error,
        stages=stats,
        client_seconds=client_seconds,
        server_seconds=server_seconds,
        bytes_up=bytes_up,
        bytes_down=bytes_down,
        client_errors=client_errors,
        rejected=list(server.rejected),
    )
