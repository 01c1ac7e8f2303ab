"""Versioned, deterministic binary codec for protocol messages. No pickle.

Frame (all integers big-endian unless stated)::

    magic   4 bytes  b"SAGR"
    version u8       1
    type    u8       1..9 (see MESSAGE_TYPES)
    session 16 bytes
    round   u32
    body    per type, below; nothing may follow it

Bodies (``blob`` = u16 length then bytes; ``pairs`` = u32 count then that many
``(u32 id, blob)``; ``idset`` = a set of client ids in one of two forms, whichever is
shorter (the list on a tie), so that survivor lists of thousands of clients cost
about one bit per client::

    idset form 0: u8 0 | u32 count | count x u32, strictly ascending
    idset form 1: u8 1 | u32 base | u32 nbits | ceil(nbits/8) bytes; bit i (LSB first
                  in each byte) set iff id base+i is in the set; bits 0 and nbits-1
                  set, padding bits zero

)::

    1 AdvertiseKeys        sender u32 | enc_public 32 | mask_public 32 | signature blob
    2 KeyBroadcast         receiver u32 | u32 count | count x (sender u32 | enc 32 |
                           mask 32 | signature blob)
    3 ShareKeys            sender u32 | boxes pairs (receiver, box)
    4 ShareBroadcast       receiver u32 | boxes pairs (sender, box)
    5 MaskedInput          sender u32 | bits u8 | u32 count | count words, each W bytes
                           little-endian (W = 4 if bits <= 32 else 8), every word < 2**bits
    6 ConsistencyRequest   receiver u32 | survivors idset
    7 ConsistencyResponse  sender u32 | signature blob
    8 UnmaskRequest        receiver u32 | survivors idset | dropped idset | signatures pairs
    9 UnmaskResponse       sender u32 | seed_shares pairs | key_shares pairs

:func:`decode` rejects, with :class:`~secagg_rec.errors.DecodeError` and nothing else:
wrong magic or version, unknown type, truncated input, counts larger than the limits
or than the bytes left, trailing bytes, and any field the message itself refuses.
Encoding is deterministic: equal messages give equal bytes.
"""

from __future__ import annotations

import struct

import numpy as np

from secagg_rec.crypto.prg import word_dtype
from secagg_rec.errors import DecodeError
from secagg_rec.secagg._memo import TupleMemo
from secagg_rec.secagg.messages import (
    MESSAGE_TYPES,
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

__all__ = ["MAGIC", "MAX_IDS", "MAX_MESSAGE_BYTES", "MAX_WORDS", "VERSION", "decode", "encode"]

MAGIC = b"SAGR"
VERSION = 1
MAX_IDS = 1 << 20  # entries in any list
MAX_WORDS = 1 << 28  # words in a masked vector
MAX_MESSAGE_BYTES = 1 << 31
_HEADER = struct.Struct(">4sBB16sI")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


# -- encoding ----------------------------------------------------------------------------


def _u32(v: int) -> bytes:
    return _U32.pack(v)


def _blob(b: bytes) -> bytes:
    return _U16.pack(len(b)) + b


# Encodings of the last few large id tuples (see secagg_rec.secagg._memo): a server
# sends one survivor list to every client, so it is encoded once per round.
_IDSET_MEMO = TupleMemo[bytes]()


def _idset(ids: tuple[int, ...]) -> bytes:
    """Encode an ascending tuple of distinct ids in the shorter idset form."""
    encoded = _IDSET_MEMO.get(ids)
    if encoded is None:
        encoded = _idset_uncached(ids)
        _IDSET_MEMO.put(ids, encoded)
    return encoded


def _idset_uncached(ids: tuple[int, ...]) -> bytes:
    if not ids:
        return b"\x00" + _u32(0)
    arr = np.asarray(ids, dtype=np.int64)
    base, nbits = int(arr[0]), int(arr[-1] - arr[0]) + 1
    list_size = 4 + 4 * len(ids)
    bitmap_size = 8 + (nbits + 7) // 8
    if bitmap_size < list_size:
        bits = np.zeros(nbits, dtype=np.uint8)
        bits[arr - base] = 1
        return b"\x01" + _u32(base) + _u32(nbits) + np.packbits(bits, bitorder="little").tobytes()
    return b"\x00" + _u32(len(ids)) + arr.astype(">u4").tobytes()


def _pairs(pairs: tuple[tuple[int, bytes], ...]) -> bytes:
    return _u32(len(pairs)) + b"".join(_U32.pack(c) + _blob(b) for c, b in pairs)


def _advert_body(m: AdvertiseKeys) -> bytes:
    return _u32(m.sender) + m.enc_public + m.mask_public + _blob(m.signature)


def encode(msg: Message) -> bytes:
    """Serialize ``msg``. Raises TypeError for a non-message."""
    if not isinstance(msg, Message) or type(msg) not in MESSAGE_TYPES.values():
        raise TypeError(f"not a protocol message: {type(msg).__name__}")
    head = _HEADER.pack(MAGIC, VERSION, msg.TYPE, msg.session_id, msg.round_index)
    if isinstance(msg, AdvertiseKeys):
        body = _advert_body(msg)
    elif isinstance(msg, KeyBroadcast):
        body = _u32(msg.receiver) + _u32(len(msg.peers)) + b"".join(map(_advert_body, msg.peers))
    elif isinstance(msg, ShareKeys):
        body = _u32(msg.sender) + _pairs(msg.boxes)
    elif isinstance(msg, ShareBroadcast):
        body = _u32(msg.receiver) + _pairs(msg.boxes)
    elif isinstance(msg, MaskedInput):
        words = msg.vector.astype(msg.vector.dtype.newbyteorder("<"), copy=False)
        body = _u32(msg.sender) + bytes([msg.bits]) + _u32(words.size) + words.tobytes()
    elif isinstance(msg, ConsistencyRequest):
        body = _u32(msg.receiver) + _idset(msg.survivors)
    elif isinstance(msg, ConsistencyResponse):
        body = _u32(msg.sender) + _blob(msg.signature)
    elif isinstance(msg, UnmaskRequest):
        body = (
            _u32(msg.receiver)
            + _idset(msg.survivors)
            + _idset(msg.dropped)
            + _pairs(msg.signatures)
        )
    else:
        assert isinstance(msg, UnmaskResponse)
        body = _u32(msg.sender) + _pairs(msg.seed_shares) + _pairs(msg.key_shares)
    return head + body


# -- decoding ----------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise DecodeError(f"truncated message: need {n} bytes at offset {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def count(self, min_entry_bytes: int, limit: int = MAX_IDS) -> int:
        n = self.u32()
        if n > limit:
            raise DecodeError(f"list of {n} entries exceeds the limit {limit}")
        if n * min_entry_bytes > self.left():
            raise DecodeError(f"list of {n} entries does not fit in the {self.left()} bytes left")
        return n

    def blob(self) -> bytes:
        return self.take(self.u16())

    def idset(self) -> tuple[int, ...]:
        form = self.u8()
        if form == 0:
            n = self.count(4)
            arr = np.frombuffer(self.take(4 * n), dtype=">u4").astype(np.int64)
            if n > 1 and not np.all(arr[1:] > arr[:-1]):
                raise DecodeError("id list is not strictly ascending")
            ids = tuple(arr.tolist())
            if n and 8 + (int(arr[-1] - arr[0]) + 1 + 7) // 8 < 4 + 4 * n:
                raise DecodeError("id set not in its canonical (shorter) form")
            return ids
        if form != 1:
            raise DecodeError(f"unknown id set form {form}")
        base, nbits = self.u32(), self.u32()
        nbytes = (nbits + 7) // 8
        if nbits < 1 or base + nbits - 1 > 0xFFFFFFFF or nbits > 8 * MAX_IDS:
            raise DecodeError(f"id bitmap of {nbits} bits at base {base} is out of range")
        raw = np.frombuffer(self.take(nbytes), dtype=np.uint8)
        bits = np.unpackbits(raw, bitorder="little")
        if bits[nbits:].any() or not bits[0] or not bits[nbits - 1]:
            raise DecodeError("id bitmap is not canonical (first/last bit or padding)")
        offsets = np.flatnonzero(bits[:nbits])
        if offsets.size > MAX_IDS:
            raise DecodeError(f"id set of {offsets.size} entries exceeds the limit {MAX_IDS}")
        if 8 + nbytes >= 4 + 4 * offsets.size:
            raise DecodeError("id set not in its canonical (shorter) form")
        return tuple((offsets + base).tolist())

    def pairs(self) -> tuple[tuple[int, bytes], ...]:
        n = self.count(6)
        return tuple((self.u32(), self.blob()) for _ in range(n))


def _read_advert(r: _Reader, session_id: bytes, round_index: int) -> AdvertiseKeys:
    return AdvertiseKeys(
        session_id=session_id,
        round_index=round_index,
        sender=r.u32(),
        enc_public=r.take(32),
        mask_public=r.take(32),
        signature=r.blob(),
    )


def decode(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Parse one message from ``data``.

    Args:
        data: the whole frame (bytes-like).
        max_bytes: refuse anything longer (default 2 GiB).

    Raises:
        DecodeError: for any malformed, truncated, oversized or trailing input.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise DecodeError(f"message of {len(data)} bytes exceeds the limit {max_bytes}")
    if len(data) < _HEADER.size:
        raise DecodeError(f"truncated message: {len(data)} bytes, header needs {_HEADER.size}")
    magic, version, mtype, session_id, round_index = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError("not a secagg_rec message (bad magic)")
    if version != VERSION:
        raise DecodeError(f"unsupported codec version {version} (this is {VERSION})")
    cls = MESSAGE_TYPES.get(mtype)
    if cls is None:
        raise DecodeError(f"unknown message type {mtype}")
    r = _Reader(data)
    r.pos = _HEADER.size
    common = {"session_id": session_id, "round_index": round_index}
    try:
        msg: Message
        if cls is AdvertiseKeys:
            msg = _read_advert(r, session_id, round_index)
        elif cls is KeyBroadcast:
            receiver = r.u32()
            n = r.count(4 + 64 + 2)
            peers = tuple(_read_advert(r, session_id, round_index) for _ in range(n))
            msg = KeyBroadcast(**common, receiver=receiver, peers=peers)
        elif cls is ShareKeys:
            msg = ShareKeys(**common, sender=r.u32(), boxes=r.pairs())
        elif cls is ShareBroadcast:
            msg = ShareBroadcast(**common, receiver=r.u32(), boxes=r.pairs())
        elif cls is MaskedInput:
            sender = r.u32()
            bits = r.u8()
            try:
                dtype = word_dtype(bits)
            except ValueError as exc:
                raise DecodeError(f"bad bit width {bits}") from exc
            n = r.count(dtype.itemsize, MAX_WORDS)
            raw = r.take(n * dtype.itemsize)
            vec = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
            msg = MaskedInput(**common, sender=sender, bits=bits, vector=vec)
        elif cls is ConsistencyRequest:
            msg = ConsistencyRequest(**common, receiver=r.u32(), survivors=r.idset())
        elif cls is ConsistencyResponse:
            msg = ConsistencyResponse(**common, sender=r.u32(), signature=r.blob())
        elif cls is UnmaskRequest:
            msg = UnmaskRequest(
                **common,
                receiver=r.u32(),
                survivors=r.idset(),
                dropped=r.idset(),
                signatures=r.pairs(),
            )
        else:
            msg = UnmaskResponse(
                **common, sender=r.u32(), seed_shares=r.pairs(), key_shares=r.pairs()
            )
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"invalid {cls.__name__}: {exc}") from exc
    if r.left():
        raise DecodeError(f"{r.left()} trailing bytes after {cls.__name__}")
    return msg
