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

The round loop (:func:`drive_round`) is separate from where the clients run: a
:class:`ClientRunner` takes one stage's ``(client id, server bytes)`` pairs and yields
the clients' replies **in the same order**. :class:`LocalClients` runs them in this
process (what :func:`run_round` uses); ``secagg_rec.sim.pool.ProcessPoolClients`` runs
them in worker processes. Either way the server sees the replies in the same
deterministic order, so the result does not depend on scheduling. The server's
messages are encoded lazily, one client at a time, so the driver never holds a whole
stage's encoded messages at once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from secagg_rec.crypto.keys import SigningKey
from secagg_rec.crypto.random import RandomSource
from secagg_rec.errors import SecAggError, ThresholdError
from secagg_rec.secagg import codec
from secagg_rec.secagg.client import ClientSession
from secagg_rec.secagg.config import SecAggConfig
from secagg_rec.secagg.messages import ConsistencyRequest, Message
from secagg_rec.secagg.server import ServerSession

__all__ = [
    "STAGES",
    "ClientReply",
    "ClientRunner",
    "LocalClients",
    "RoundResult",
    "StageStats",
    "drive_round",
    "run_round",
]

STAGES: tuple[str, ...] = ("advertise", "share", "masked", "consistency", "unmask")

InputSource = Mapping[int, np.ndarray] | Callable[[int], np.ndarray]
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class StageStats:
    """Measurements of one stage (seconds and bytes, summed over clients).

    ``server_seconds`` is all the server's work charged to the stage: taking the
    replies (``server_receive_seconds`` of it), closing the stage and encoding the
    messages the close produced (for the next stage's clients).
    """

    name: str
    clients: int = 0  # clients that sent this stage's message
    client_seconds: float = 0.0
    client_seconds_max: float = 0.0
    server_seconds: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0
    server_receive_seconds: float = 0.0

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
        client_stages: stage name -> client id -> ``(seconds, bytes_down, bytes_up)``
            for every client that answered that stage (what a network cost model
            needs; see :mod:`secagg_rec.sim.cost_model`).
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
    client_stages: dict[str, dict[int, tuple[float, int, int]]] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientReply:
    """One client's answer to one stage.

    Attributes:
        client_id: who answered.
        up: the encoded reply, or ``None`` if the client gave up (``error`` says why).
        seconds: compute seconds the client spent on this stage (``perf_counter``),
            including decoding the server's message and encoding the reply.
        error: ``"ErrorType: message"`` when the client raised a ``SecAggError``.
    """

    client_id: int
    up: bytes | None
    seconds: float
    error: str | None = None


class ClientRunner(Protocol):
    """Where the clients of one round live and compute.

    ``run_stage(stage, items)`` receives, lazily, ``(client id, server bytes)`` for the
    clients still active in ``stage`` (``b""`` for the advertise stage) and must yield
    one :class:`ClientReply` per item, **in the order of the items**. A client that
    raises a ``SecAggError`` is reported with ``up=None``; any other exception
    propagates out of the round.
    """

    def run_stage(
        self, stage: str, items: Iterable[tuple[int, bytes]]
    ) -> Iterator[ClientReply]:  # pragma: no cover - protocol
        ...


def client_step(
    client: ClientSession,
    stage: str,
    down: bytes,
    get_input: Callable[[int], np.ndarray],
    shared: dict[tuple[int, ...], tuple[int, ...]] | None = None,
) -> ClientReply:
    """Run one client's work for one stage and time it (shared by every runner).

    Producing the input (``get_input``) is the caller's work, not the protocol's, and is
    not timed. Raises whatever ``get_input`` or ``set_input`` raise (e.g. ValueError).

    ``shared`` (optional) interns the survivor list of consistency requests across the
    clients of one runner: the client decodes its request as ``receive_bytes`` would,
    and if the list equals one an earlier client got, the request is rebuilt around
    that same (immutable) tuple before the client takes it. Every client keeps its
    survivor list until the round ends, so without this a simulation of ``n`` clients
    holds ``n`` copies of an ``n``-id list (about 3 GB at ``n = 10,000``); with it, one.
    Results and bytes are unchanged; the client pays one more id-list validation.
    """
    cid = client.client_id
    words = get_input(cid) if stage == "masked" else None
    t0 = time.perf_counter()
    try:
        if stage == "advertise":
            up = codec.encode(client.start())
        elif stage == "consistency" and shared is not None:
            up = _receive_interned(client, down, shared)
        else:
            if words is not None:
                client.set_input(words)
            up = client.receive_bytes(down)
    except SecAggError as exc:
        return ClientReply(cid, None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")
    return ClientReply(cid, up, time.perf_counter() - t0)


def _receive_interned(
    client: ClientSession, down: bytes, shared: dict[tuple[int, ...], tuple[int, ...]]
) -> bytes:
    try:
        message = codec.decode(down)
    except SecAggError:
        return client.receive_bytes(down)  # fails the session exactly as usual
    if isinstance(message, ConsistencyRequest):
        same = shared.get(message.survivors)
        if same is None:
            shared.clear()  # one round, one survivor list: keep only the latest
            shared[message.survivors] = message.survivors
        elif same is not message.survivors:
            message = dataclasses.replace(message, survivors=same)
    return codec.encode(client.receive(message))


class LocalClients:
    """Every client of a round as a :class:`ClientSession` in this process.

    Args:
        config: the round configuration.
        inputs: client id -> words, as a mapping or a function called once per client
            when its masked input is due.
        rng_factory: client id -> random source (default: OS CSPRNG for everyone).
        signing_keys: client id -> Ed25519 key (authenticated mode).
        client_ids: the clients to hold (default: all of ``config.client_ids``).
    """

    def __init__(
        self,
        config: SecAggConfig,
        inputs: InputSource,
        *,
        rng_factory: Callable[[int], RandomSource] | None = None,
        signing_keys: Mapping[int, SigningKey] | None = None,
        client_ids: Iterable[int] | None = None,
    ) -> None:
        self._get_input = inputs if callable(inputs) else inputs.__getitem__
        ids = config.client_ids if client_ids is None else tuple(client_ids)
        self.clients = {
            cid: ClientSession(
                config,
                cid,
                rng=rng_factory(cid) if rng_factory else None,
                signing_key=signing_keys[cid] if signing_keys else None,
            )
            for cid in ids
        }
        self._shared: dict[tuple[int, ...], tuple[int, ...]] = {}

    def run_stage(self, stage: str, items: Iterable[tuple[int, bytes]]) -> Iterator[ClientReply]:
        """Process ``items`` one at a time, lazily (see :class:`ClientRunner`)."""
        for cid, down in items:
            yield client_step(self.clients[cid], stage, down, self._get_input, self._shared)


def _validate_dropouts(config: SecAggConfig, dropouts: Mapping[int, str]) -> None:
    for cid, stage in dropouts.items():
        if cid not in config.id_set:
            raise ValueError(f"dropout schedule names client {cid}, not in the round")
        if stage not in STAGES:
            raise ValueError(f"unknown dropout stage {stage!r}; expected one of {STAGES}")


def _validate_keys(config: SecAggConfig, signing_keys: Mapping[int, SigningKey] | None) -> None:
    if config.authenticated and (
        signing_keys is None or any(c not in signing_keys for c in config.client_ids)
    ):
        raise ValueError("authenticated mode needs a signing key for every client")


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
    _validate_keys(config, signing_keys)
    runner = LocalClients(config, inputs, rng_factory=rng_factory, signing_keys=signing_keys)
    return drive_round(config, runner, dropouts=dropouts, on_progress=on_progress)


def drive_round(
    config: SecAggConfig,
    runner: ClientRunner,
    *,
    dropouts: Mapping[int, str] | None = None,
    on_progress: ProgressCallback | None = None,
) -> RoundResult:
    """Run one round with the server here and the clients in ``runner``.

    The server takes the replies in the order of its own outgoing messages (client-id
    order, except the advertise stage, which follows ``config.client_ids``), whatever
    the runner's scheduling, so two runners given the same clients produce the same
    result. ``on_progress(stage, done, total)`` is called once per outgoing message,
    ``done`` counting up to ``total``.

    Raises:
        ValueError: a bad dropout schedule (before any work).
    """
    dropouts = dict(dropouts or {})
    _validate_dropouts(config, dropouts)
    stage_index = {name: i for i, name in enumerate(STAGES)}

    def active(cid: int, stage: str) -> bool:
        drop = dropouts.get(cid)
        return drop is None or stage_index[drop] > stage_index[stage]

    server = ServerSession(config)
    client_seconds = dict.fromkeys(config.client_ids, 0.0)
    bytes_up = dict.fromkeys(config.client_ids, 0)
    bytes_down = dict.fromkeys(config.client_ids, 0)
    client_errors: dict[int, str] = {}
    client_stages: dict[str, dict[int, tuple[float, int, int]]] = {s: {} for s in STAGES}
    stats = [StageStats(name) for name in STAGES]
    server_seconds = 0.0
    error: str | None = None

    def add_server_time(index: int, dt: float) -> None:
        nonlocal server_seconds
        server_seconds += dt
        stats[index].server_seconds += dt

    def deliver(stage: str, outgoing: Mapping[int, Message | None], sent_by: int) -> None:
        """Feed server messages to clients; forward replies to the server in order.

        ``sent_by`` is the index of the stage whose close produced ``outgoing``: the
        time to encode those messages is that stage's server time.
        """
        st = stats[stage_index[stage]]
        order = list(outgoing)
        total = len(order)
        position = {cid: i for i, cid in enumerate(order)}
        down_len: dict[int, int] = {}
        reported = 0

        def report_until(pos: int) -> None:
            nonlocal reported
            if on_progress is None:
                reported = max(reported, pos)
                return
            while reported < pos:
                reported += 1
                on_progress(stage, reported, total)

        def items() -> Iterator[tuple[int, bytes]]:
            for cid in order:
                msg = outgoing[cid]
                if msg is None:
                    down = b""
                else:  # the server encodes it whether or not the client is still there
                    t0 = time.perf_counter()
                    down = codec.encode(msg)
                    add_server_time(sent_by, time.perf_counter() - t0)
                if not active(cid, stage):
                    continue
                down_len[cid] = len(down)
                yield cid, down

        for reply in runner.run_stage(stage, items()):
            cid = reply.client_id
            report_until(position[cid] + 1)
            client_seconds[cid] += reply.seconds
            st.client_seconds += reply.seconds
            st.client_seconds_max = max(st.client_seconds_max, reply.seconds)
            down = down_len.pop(cid)
            if reply.up is None:
                client_errors[cid] = reply.error or "client gave up"
                continue
            up = reply.up
            bytes_down[cid] += down
            bytes_up[cid] += len(up)
            st.bytes_down += down
            st.bytes_up += len(up)
            st.clients += 1
            client_stages[stage][cid] = (reply.seconds, down, len(up))
            t0 = time.perf_counter()
            try:
                server.receive_bytes(up)
            except SecAggError:
                pass  # recorded in server.rejected
            finally:
                dt = time.perf_counter() - t0
                add_server_time(stage_index[stage], dt)
                st.server_receive_seconds += dt
        report_until(total)

    def close(stage: str) -> dict[int, Message]:
        t0 = time.perf_counter()
        try:
            return server.close_stage()
        finally:
            add_server_time(stage_index[stage], time.perf_counter() - t0)

    try:
        outgoing: Mapping[int, Message | None] = dict.fromkeys(config.client_ids)
        sent_by = 0
        for stage in STAGES:
            deliver(stage, outgoing, sent_by)
            outgoing = close(stage)
            sent_by = stage_index[stage]
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
        client_stages=client_stages,
    )
