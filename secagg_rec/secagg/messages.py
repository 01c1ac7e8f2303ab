"""Protocol messages: frozen, keyword-only dataclasses that validate themselves.

One message type per step of a round (Bonawitz et al. 2017, with SecAgg+ graphs):

======================  ===========  =================================================
message                 direction    content
======================  ===========  =================================================
AdvertiseKeys           client->srv  two X25519 public keys (+ Ed25519 signature)
KeyBroadcast            srv->client  the neighbours' advertisements
ShareKeys               client->srv  encrypted Shamir shares, one box per neighbour
ShareBroadcast          srv->client  the boxes addressed to this client
MaskedInput             client->srv  the masked vector
ConsistencyRequest      srv->client  the survivors (clients whose masked input came)
ConsistencyResponse     client->srv  signature over the survivors (empty if unauth.)
UnmaskRequest           srv->client  survivors, dropped, the neighbours' signatures
UnmaskResponse          client->srv  self-mask seed shares of survivors and
                                     mask-key shares of dropped clients
======================  ===========  =================================================

Every message carries the session id and round; the byte layouts are in
:mod:`secagg_rec.secagg.codec` and ``protocols/secagg.md``. Construction raises
``ValueError`` for a malformed field (the codec turns that into ``DecodeError``).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from secagg_rec.crypto.prg import MAX_BITS, word_dtype
from secagg_rec.secagg._memo import TupleMemo

__all__ = [
    "MESSAGE_TYPES",
    "AdvertiseKeys",
    "ConsistencyRequest",
    "ConsistencyResponse",
    "KeyBroadcast",
    "MaskedInput",
    "Message",
    "ShareBroadcast",
    "ShareKeys",
    "UnmaskRequest",
    "UnmaskResponse",
    "advertise_signing_payload",
    "consistency_signing_payload",
]

U32_MAX = 0xFFFFFFFF
U16_MAX = 0xFFFF
KEY_BYTES = 32
SIG_BYTES = 64


def _check_u32(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= U32_MAX:
        raise ValueError(f"{name} must be an int in [0, 2**32), got {value!r}")


def _check_ids(name: str, ids: Iterable[int]) -> None:
    ids = tuple(ids)
    if not ids:
        return
    if not set(map(type, ids)) <= {int}:  # bool and other int subclasses refused too
        bad = next(c for c in ids if type(c) is not int)
        raise ValueError(f"{name} must be ints in [0, 2**32), got {bad!r}")
    if min(ids) < 0 or max(ids) > U32_MAX:
        raise ValueError(f"{name} must be ints in [0, 2**32), got {min(ids)}..{max(ids)}")
    if len(set(ids)) != len(ids):
        seen: set[int] = set()
        dup = next(c for c in ids if c in seen or seen.add(c))  # type: ignore[func-returns-value]
        raise ValueError(f"{name} lists client {dup} twice")


# Id tuples already found valid and ascending (see secagg_rec.secagg._memo).
_CANONICAL = TupleMemo[bool]()


def _canonical_ids(name: str, ids: Iterable[int]) -> tuple[int, ...]:
    """Check ``ids`` (:func:`_check_ids`) and return them as an ascending tuple; a
    tuple that was checked before is returned at once."""
    if type(ids) is not tuple:
        ids = tuple(ids)
    if _CANONICAL.get(ids):
        return ids
    _check_ids(name, ids)
    out = _sorted_ids(ids)
    _CANONICAL.put(out, True)
    return out


def _sorted_ids(ids: Iterable[int]) -> tuple[int, ...]:
    """``ids`` as an ascending tuple; an already ascending tuple is returned as is, so
    one survivor list can be shared by thousands of messages without copies."""
    if isinstance(ids, tuple) and all(map(operator.lt, ids, itertools.islice(ids, 1, None))):
        return ids
    return tuple(sorted(ids))


def _check_bytes(name: str, value: object, lengths: tuple[int, ...] | None = None) -> None:
    if not isinstance(value, bytes):
        raise ValueError(f"{name} must be bytes, got {type(value).__name__}")
    if lengths is not None and len(value) not in lengths:
        raise ValueError(f"{name} must be {' or '.join(map(str, lengths))} bytes, got {len(value)}")
    if len(value) > U16_MAX:
        raise ValueError(f"{name} is longer than {U16_MAX} bytes")


@dataclass(frozen=True, kw_only=True)
class Message:
    """Fields common to every message: the session id (16 bytes) and round."""

    session_id: bytes
    round_index: int
    TYPE: ClassVar[int] = 0

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, bytes) or len(self.session_id) != 16:
            raise ValueError("session_id must be 16 bytes")
        _check_u32("round_index", self.round_index)


@dataclass(frozen=True, kw_only=True)
class AdvertiseKeys(Message):
    """Client ``sender`` announces its channel key and its mask key."""

    sender: int
    enc_public: bytes
    mask_public: bytes
    signature: bytes = b""
    TYPE: ClassVar[int] = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_u32("sender", self.sender)
        _check_bytes("enc_public", self.enc_public, (KEY_BYTES,))
        _check_bytes("mask_public", self.mask_public, (KEY_BYTES,))
        _check_bytes("signature", self.signature, (0, SIG_BYTES))


@dataclass(frozen=True, kw_only=True)
class KeyBroadcast(Message):
    """The server forwards to ``receiver`` the advertisements of its live neighbours."""

    receiver: int
    peers: tuple[AdvertiseKeys, ...]
    TYPE: ClassVar[int] = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_u32("receiver", self.receiver)
        object.__setattr__(self, "peers", tuple(self.peers))
        for p in self.peers:
            if not isinstance(p, AdvertiseKeys):
                raise ValueError("peers must be AdvertiseKeys messages")
            if p.session_id != self.session_id or p.round_index != self.round_index:
                raise ValueError("a forwarded advertisement is from another session or round")
        _check_ids("peers", (p.sender for p in self.peers))


def _check_boxes(name: str, boxes: tuple[tuple[int, bytes], ...]) -> None:
    _check_ids(name, (cid for cid, _ in boxes))
    for _, box in boxes:
        _check_bytes(f"{name} box", box)


@dataclass(frozen=True, kw_only=True)
class ShareKeys(Message):
    """Client ``sender``'s encrypted shares: ``(receiver id, box)`` pairs."""

    sender: int
    boxes: tuple[tuple[int, bytes], ...]
    TYPE: ClassVar[int] = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_u32("sender", self.sender)
        object.__setattr__(self, "boxes", tuple((int(c), b) for c, b in self.boxes))
        _check_boxes("boxes", self.boxes)


@dataclass(frozen=True, kw_only=True)
class ShareBroadcast(Message):
    """The boxes addressed to ``receiver``: ``(sender id, box)`` pairs."""

    receiver: int
    boxes: tuple[tuple[int, bytes], ...]
    TYPE: ClassVar[int] = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_u32("receiver", self.receiver)
        object.__setattr__(self, "boxes", tuple((int(c), b) for c, b in self.boxes))
        _check_boxes("boxes", self.boxes)


@dataclass(frozen=True, kw_only=True, eq=False)
class MaskedInput(Message):
    """Client ``sender``'s masked vector: words of Z_{2^bits} (uint32 if bits <= 32,
    else uint64), held read-only."""

    sender: int
    bits: int
    vector: np.ndarray
    TYPE: ClassVar[int] = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_u32("sender", self.sender)
        if not isinstance(self.bits, int) or not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"bits must be in [1, {MAX_BITS}], got {self.bits!r}")
        vec = self.vector
        if not isinstance(vec, np.ndarray) or vec.ndim != 1:
            raise ValueError("vector must be a 1-D numpy array")
        if vec.dtype != word_dtype(self.bits):
            raise ValueError(f"vector dtype must be {word_dtype(self.bits)} for bits={self.bits}")
        if self.bits < 8 * vec.dtype.itemsize and vec.size and int(vec.max()) >> self.bits:
            raise ValueError(f"vector has words >= 2**{self.bits}")
        view = vec.view()
        view.flags.writeable = False
        object.__setattr__(self, "vector", view)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskedInput):
            return NotImplemented
        return (
            (self.session_id, self.round_index, self.sender, self.bits)
            == (other.session_id, other.round_index, other.sender, other.bits)
            and np.array_equal(self.vector, other.vector)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, kw_only=True)
class ConsistencyRequest(Message):
    """The server tells ``receiver`` which clients' masked inputs arrived.

    ``survivors`` is a set: stored sorted ascending."""

    receiver: int
    survivors: tuple[int, ...]
    TYPE: ClassVar[int] = 6

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_u32("receiver", self.receiver)
        object.__setattr__(self, "survivors", _canonical_ids("survivors", self.survivors))


@dataclass(frozen=True, kw_only=True)
class ConsistencyResponse(Message):
    """Client ``sender`` signs the survivor list (empty signature when unauthenticated)."""

    sender: int
    signature: bytes = b""
    TYPE: ClassVar[int] = 7

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_u32("sender", self.sender)
        _check_bytes("signature", self.signature, (0, SIG_BYTES))


@dataclass(frozen=True, kw_only=True)
class UnmaskRequest(Message):
    """The server asks ``receiver`` for shares: self-mask seed shares of ``survivors``
    and mask-key shares of ``dropped``; ``signatures`` are the consistency signatures
    of ``receiver``'s neighbours (authenticated mode). ``survivors`` and ``dropped``
    are sets, stored sorted ascending."""

    receiver: int
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    signatures: tuple[tuple[int, bytes], ...] = ()
    TYPE: ClassVar[int] = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_u32("receiver", self.receiver)
        object.__setattr__(self, "signatures", tuple((int(c), s) for c, s in self.signatures))
        object.__setattr__(self, "survivors", _canonical_ids("survivors", self.survivors))
        object.__setattr__(self, "dropped", _canonical_ids("dropped", self.dropped))
        _check_ids("signatures", (c for c, _ in self.signatures))
        for _, sig in self.signatures:
            _check_bytes("signature", sig, (SIG_BYTES,))


@dataclass(frozen=True, kw_only=True)
class UnmaskResponse(Message):
    """Client ``sender``'s revealed shares: ``(owner id, share)`` pairs."""

    sender: int
    seed_shares: tuple[tuple[int, bytes], ...]
    key_shares: tuple[tuple[int, bytes], ...]
    TYPE: ClassVar[int] = 9

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_u32("sender", self.sender)
        object.__setattr__(self, "seed_shares", tuple((int(c), s) for c, s in self.seed_shares))
        object.__setattr__(self, "key_shares", tuple((int(c), s) for c, s in self.key_shares))
        _check_boxes("seed_shares", self.seed_shares)
        _check_boxes("key_shares", self.key_shares)
        both = {c for c, _ in self.seed_shares} & {c for c, _ in self.key_shares}
        if both:
            raise ValueError(f"both shares revealed for clients {sorted(both)[:5]}")


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        AdvertiseKeys,
        KeyBroadcast,
        ShareKeys,
        ShareBroadcast,
        MaskedInput,
        ConsistencyRequest,
        ConsistencyResponse,
        UnmaskRequest,
        UnmaskResponse,
    )
}


def advertise_signing_payload(msg: AdvertiseKeys) -> bytes:
    """Bytes an authenticated client signs in :class:`AdvertiseKeys`."""
    return (
        b"secagg_rec/v1/advertise\x00"
        + msg.session_id
        + msg.round_index.to_bytes(4, "big")
        + msg.sender.to_bytes(4, "big")
        + msg.enc_public
        + msg.mask_public
    )


def consistency_signing_payload(
    session_id: bytes, round_index: int, survivors: Iterable[int]
) -> bytes:
    """Bytes signed in the consistency check: the *sorted* survivor list."""
    ids = sorted(survivors)
    return (
        b"secagg_rec/v1/consistency\x00"
        + session_id
        + round_index.to_bytes(4, "big")
        + len(ids).to_bytes(4, "big")
        + b"".join(c.to_bytes(4, "big") for c in ids)
    )
