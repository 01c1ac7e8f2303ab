"""The round setup: the server's first message of a round, and the client's check of it.

The server sends each selected node one setup message (stage ``advertise``). Besides
whatever the application adds (e.g. the global model), its ``secagg_rec``
ConfigRecord holds everything the client needs to build the same
:class:`~secagg_rec.secagg.SecAggConfig` and :class:`~secagg_rec.encoding.Quantizer`
as the server:

=================  ===========  =======================================================
key                type         meaning
=================  ===========  =======================================================
``session-id``     bytes (16)   fresh random session id
``round``          int          round index, ``[0, 2**32)``; a client refuses a round
                                index it has already seen (no replay of a round)
``client-ids``     list[int]    the round's client ids (u32), in Shamir order
``client-id``      int          the recipient's own id (one of ``client-ids``)
``threshold``      int          ``t``
``neighbors``      str          ``"full"`` or the decimal ``k``
``bits``           int          ring width
``dim``            int          words per input (the update's length, +1 if weighted)
``seed-bytes``     int          16 or 32
``authenticated``  bool         must be false (see below)
``q-clip``         float        quantizer: per-coordinate clip
``q-scale``        float        quantizer: units per 1.0
``q-max-clients``  int          quantizer: most inputs summed (``>= n``)
``q-l2-clip``      float        optional: L2 clip
``q-weighted``     bool         the last word is the weight
``q-weight-max``   float        largest weight
``q-weight-scale`` float        optional: units per 1.0 of weight
=================  ===========  =======================================================

A Flower node id is 64 bits and never appears in the protocol: the server numbers the
selected nodes ``1..n`` for the round and tells each node only its own number. The
authenticated mode (Ed25519 PKI) needs keys that clients trust independently of the
server, which Flower does not provide; clients refuse it until that binding exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flwr.app import ConfigRecord

from secagg_rec.encoding import Quantizer
from secagg_rec.errors import RemoteProtocolError
from secagg_rec.flower.settings import ClientPolicy
from secagg_rec.secagg.config import SecAggConfig

__all__ = ["RoundSetup", "setup_from_record", "setup_to_record"]


@dataclass(frozen=True)
class RoundSetup:
    """One client's view of a round: the protocol config, the encoding and its id."""

    config: SecAggConfig
    quantizer: Quantizer
    client_id: int

    @property
    def value_dim(self) -> int:
        """Floats per update (``dim`` minus the weight word when weighted)."""
        return self.config.dim - (1 if self.quantizer.weighted else 0)


def setup_to_record(config: SecAggConfig, quantizer: Quantizer, client_id: int) -> ConfigRecord:
    """The setup fields for ``client_id`` (merge into the ``secagg_rec`` record).

    Raises:
        ValueError: ``client_id`` not in the round, or the quantizer does not match the
            config (bits, ``max_clients >= n``).
    """
    if client_id not in config.id_set:
        raise ValueError(f"client {client_id} is not in the round")
    if quantizer.bits != config.bits or quantizer.max_clients < config.n:
        raise ValueError("quantizer bits must equal config.bits and max_clients >= n")
    if config.authenticated:
        raise ValueError("authenticated mode is not available over Flower yet")
    fields: dict[str, Any] = {
        "session-id": config.session_id,
        "round": config.round_index,
        "client-ids": list(config.client_ids),
        "client-id": client_id,
        "threshold": config.threshold,
        "neighbors": str(config.neighbors),
        "bits": config.bits,
        "dim": config.dim,
        "seed-bytes": config.seed_bytes,
        "authenticated": False,
        "q-clip": float(quantizer.clip),
        "q-scale": float(quantizer.scale),
        "q-max-clients": quantizer.max_clients,
        "q-weighted": bool(quantizer.weighted),
        "q-weight-max": float(quantizer.weight_max),
    }
    if quantizer.l2_clip is not None:
        fields["q-l2-clip"] = float(quantizer.l2_clip)
    if quantizer.weight_scale is not None:
        fields["q-weight-scale"] = float(quantizer.weight_scale)
    return ConfigRecord(fields)


def _get(
    record: ConfigRecord, key: str, kind: type | tuple[type, ...], optional: bool = False
) -> Any:
    if key not in record:
        if optional:
            return None
        raise RemoteProtocolError(f"round setup lacks {key!r}")
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise RemoteProtocolError(f"round setup field {key!r} has type bool")
    if not isinstance(value, kinds):
        raise RemoteProtocolError(f"round setup field {key!r} has type {type(value).__name__}")
    return value


def setup_from_record(
    record: ConfigRecord, policy: ClientPolicy, *, last_round: int | None = None
) -> RoundSetup:
    """Parse and check a setup record on the client.

    Args:
        record: the ``secagg_rec`` ConfigRecord of the server's setup message.
        policy: the weakest round this client accepts.
        last_round: the highest round index this client already took part in; the new
            round must be strictly later.

    Returns:
        The validated :class:`RoundSetup`.

    Raises:
        RemoteProtocolError: a missing or mistyped field, a config or quantizer the
            library refuses (out of range, a sum that could wrap), an id not in the
            round, a round index already used, or a round weaker than ``policy``.
    """
    try:
        neighbors_text = _get(record, "neighbors", str)
        if neighbors_text == "full":
            neighbors: Any = "full"
        elif neighbors_text.isdigit():
            neighbors = int(neighbors_text)
        else:
            raise RemoteProtocolError(f"round setup has neighbors={neighbors_text!r}")
        if _get(record, "authenticated", bool):
            raise RemoteProtocolError(
                "the server asks for authenticated mode, which needs a PKI this client "
                "does not have over Flower"
            )
        ids = _get(record, "client-ids", list)
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in ids):
            raise RemoteProtocolError("round setup client-ids must be ints")
        config = SecAggConfig(
            session_id=_get(record, "session-id", bytes),
            round_index=_get(record, "round", int),
            client_ids=tuple(ids),
            threshold=_get(record, "threshold", int),
            neighbors=neighbors,
            bits=_get(record, "bits", int),
            dim=_get(record, "dim", int),
            seed_bytes=_get(record, "seed-bytes", int),
        )
        quantizer = Quantizer(
            bits=config.bits,
            clip=_get(record, "q-clip", float),
            scale=_get(record, "q-scale", float),
            max_clients=_get(record, "q-max-clients", int),
            l2_clip=_get(record, "q-l2-clip", float, optional=True),
            weighted=_get(record, "q-weighted", bool),
            weight_max=_get(record, "q-weight-max", float),
            weight_scale=_get(record, "q-weight-scale", float, optional=True),
        )
        client_id = _get(record, "client-id", int)
    except ValueError as exc:
        raise RemoteProtocolError(f"round setup refused: {exc}") from exc
    if client_id not in config.id_set:
        raise RemoteProtocolError(f"round setup names this client {client_id}, not in the round")
    if quantizer.max_clients < config.n:
        raise RemoteProtocolError(
            f"quantizer sized for {quantizer.max_clients} clients, round has {config.n}: "
            "the sum could wrap"
        )
    if config.dim < 1 + (1 if quantizer.weighted else 0):
        raise RemoteProtocolError(f"round setup has dim={config.dim}, too short")
    if last_round is not None and config.round_index <= last_round:
        raise RemoteProtocolError(
            f"round {config.round_index} is not after round {last_round}, which this "
            "client already joined (replayed round?)"
        )
    _check_policy(config, policy)
    return RoundSetup(config=config, quantizer=quantizer, client_id=client_id)


def _check_policy(config: SecAggConfig, policy: ClientPolicy) -> None:
    if config.n < policy.min_clients:
        raise RemoteProtocolError(
            f"round has {config.n} clients; this client requires at least {policy.min_clients}"
        )
    if config.threshold < policy.min_threshold:
        raise RemoteProtocolError(
            f"round threshold {config.threshold} is below this client's minimum "
            f"{policy.min_threshold}"
        )
    if config.threshold < policy.min_threshold_fraction * (config.k + 1):
        raise RemoteProtocolError(
            f"round threshold {config.threshold} is below {policy.min_threshold_fraction:g} "
            f"of the {config.k + 1} holders"
        )
    if config.dim > policy.max_dim:
        raise RemoteProtocolError(
            f"round dim {config.dim} exceeds this client's max {policy.max_dim}"
        )
    if config.bits > policy.max_bits:
        raise RemoteProtocolError(
            f"round bits {config.bits} exceed this client's max {policy.max_bits}"
        )
