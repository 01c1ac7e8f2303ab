"""Secure aggregation (Bonawitz et al. 2017; SecAgg+ graphs of Bell et al. 2020).

Sans-I/O: :class:`ClientSession` and :class:`ServerSession` consume and produce
messages; transports (the in-memory :func:`run_round`, Flower, anything) live outside.
The wire format is :mod:`secagg_rec.secagg.codec`; the protocol is written down in
``protocols/secagg.md`` and the threat model in ``protocols/threat-model.md``.
"""

from __future__ import annotations

from secagg_rec.secagg.client import ClientSession
from secagg_rec.secagg.codec import decode, encode
from secagg_rec.secagg.config import SecAggConfig
from secagg_rec.secagg.driver import STAGES, RoundResult, StageStats, run_round
from secagg_rec.secagg.graph import NeighborGraph
from secagg_rec.secagg.messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencyResponse,
    KeyBroadcast,
    MaskedInput,
    Message,
    ShareBroadcast,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg_rec.secagg.server import ServerSession
from secagg_rec.secagg.transitions import ClientState, ServerState

__all__ = [
    "STAGES",
    "AdvertiseKeys",
    "ClientSession",
    "ClientState",
    "ConsistencyRequest",
    "ConsistencyResponse",
    "KeyBroadcast",
    "MaskedInput",
    "Message",
    "NeighborGraph",
    "RoundResult",
    "SecAggConfig",
    "ServerSession",
    "ServerState",
    "ShareBroadcast",
    "ShareKeys",
    "StageStats",
    "UnmaskRequest",
    "UnmaskResponse",
    "decode",
    "encode",
    "run_round",
]
