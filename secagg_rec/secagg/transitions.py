"""The protocol's state machines, written as data.

One table maps ``(role, state, event)`` to the next state. An event is a message class
arriving, or a local call (``"start"`` for a client, ``"close"`` for the server ending a
stage). Anything not in the table is illegal: a client raises at once and stays in the
sticky ``FAILED`` state; the server rejects the message and keeps going (one bad client
must not sink a round for everyone), but a local misuse of the server is sticky too.

Client::

    IDLE --start--> ADVERTISED --KeyBroadcast--> SHARED --ShareBroadcast--> MASKED
         --ConsistencyRequest--> CHECKED --UnmaskRequest--> DONE

Server (each ``COLLECT_*`` state accepts its message any number of times, once per
client, until ``close``)::

    COLLECT_KEYS --close--> COLLECT_SHARES --close--> COLLECT_MASKED --close-->
    COLLECT_CONSISTENCY --close--> COLLECT_UNMASK --close--> DONE

A ``ThresholdError`` on either side moves to ``ABORTED`` (nothing more is revealed);
any other error moves a client to ``FAILED``.
"""

from __future__ import annotations

from enum import Enum

from secagg_rec.secagg.messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencyResponse,
    KeyBroadcast,
    MaskedInput,
    ShareBroadcast,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)

__all__ = ["TRANSITIONS", "ClientState", "Role", "ServerState", "next_state"]


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


class ClientState(Enum):
    IDLE = "idle"
    ADVERTISED = "advertised"
    SHARED = "shared"
    MASKED = "masked"
    CHECKED = "checked"
    DONE = "done"
    ABORTED = "aborted"
    FAILED = "failed"


class ServerState(Enum):
    COLLECT_KEYS = "collect_keys"
    COLLECT_SHARES = "collect_shares"
    COLLECT_MASKED = "collect_masked"
    COLLECT_CONSISTENCY = "collect_consistency"
    COLLECT_UNMASK = "collect_unmask"
    DONE = "done"
    ABORTED = "aborted"
    FAILED = "failed"


Event = type | str

TRANSITIONS: dict[tuple[Role, Enum, Event], Enum] = {
    # client
    (Role.CLIENT, ClientState.IDLE, "start"): ClientState.ADVERTISED,
    (Role.CLIENT, ClientState.ADVERTISED, KeyBroadcast): ClientState.SHARED,
    (Role.CLIENT, ClientState.SHARED, ShareBroadcast): ClientState.MASKED,
    (Role.CLIENT, ClientState.MASKED, ConsistencyRequest): ClientState.CHECKED,
    (Role.CLIENT, ClientState.CHECKED, UnmaskRequest): ClientState.DONE,
    # server
    (Role.SERVER, ServerState.COLLECT_KEYS, AdvertiseKeys): ServerState.COLLECT_KEYS,
    (Role.SERVER, ServerState.COLLECT_KEYS, "close"): ServerState.COLLECT_SHARES,
    (Role.SERVER, ServerState.COLLECT_SHARES, ShareKeys): ServerState.COLLECT_SHARES,
    (Role.SERVER, ServerState.COLLECT_SHARES, "close"): ServerState.COLLECT_MASKED,
    (Role.SERVER, ServerState.COLLECT_MASKED, MaskedInput): ServerState.COLLECT_MASKED,
    (Role.SERVER, ServerState.COLLECT_MASKED, "close"): ServerState.COLLECT_CONSISTENCY,
    (
        Role.SERVER,
        ServerState.COLLECT_CONSISTENCY,
        ConsistencyResponse,
    ): ServerState.COLLECT_CONSISTENCY,
    (Role.SERVER, ServerState.COLLECT_CONSISTENCY, "close"): ServerState.COLLECT_UNMASK,
    (Role.SERVER, ServerState.COLLECT_UNMASK, UnmaskResponse): ServerState.COLLECT_UNMASK,
    (Role.SERVER, ServerState.COLLECT_UNMASK, "close"): ServerState.DONE,
}


def next_state(role: Role, state: Enum, event: Event) -> Enum | None:
    """The state after ``event`` in ``state``, or ``None`` if the event is illegal there."""
    return TRANSITIONS.get((role, state, event))
