"""The codec round-trips every message, is deterministic, and never crashes on junk."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg_rec.errors import DecodeError
from secagg_rec.secagg import codec
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

SID = bytes(range(16))


def _samples():
    adv = AdvertiseKeys(session_id=SID, round_index=3, sender=7, enc_public=b"e" * 32,
                        mask_public=b"m" * 32, signature=b"s" * 64)
    adv2 = dataclasses.replace(adv, sender=9, signature=b"")
    return [
        adv,
        KeyBroadcast(session_id=SID, round_index=3, receiver=1, peers=(adv, adv2)),
        ShareKeys(session_id=SID, round_index=3, sender=1, boxes=((7, b"x" * 80), (9, b"y"))),
        ShareBroadcast(session_id=SID, round_index=3, receiver=7, boxes=((1, b"x" * 80),)),
        MaskedInput(session_id=SID, round_index=3, sender=1, bits=12,
                    vector=np.array([0, 1, 4095], dtype=np.uint32)),
        MaskedInput(session_id=SID, round_index=3, sender=1, bits=62,
                    vector=np.array([0, (1 << 62) - 1], dtype=np.uint64)),
        ConsistencyRequest(session_id=SID, round_index=3, receiver=1, survivors=(1, 7, 9)),
        ConsistencyResponse(session_id=SID, round_index=3, sender=1, signature=b"q" * 64),
        UnmaskRequest(session_id=SID, round_index=3, receiver=1, survivors=(1, 7),
                      dropped=(9,), signatures=((7, b"z" * 64),)),
        UnmaskResponse(session_id=SID, round_index=3, sender=1, seed_shares=((7, b"a" * 20),),
                       key_shares=((9, b"b" * 36),)),
    ]


SAMPLES = _samples()


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_and_determinism(msg):
    data = codec.encode(msg)
    assert codec.decode(data) == msg
    assert codec.encode(codec.decode(data)) == data


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_truncation_and_any_trailing_byte_is_rejected(msg):
    data = codec.encode(msg)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            codec.decode(data[:cut])
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode(data + b"\x00")


def test_oversized_and_foreign_frames_are_rejected():
    data = codec.encode(SAMPLES[0])
    with pytest.raises(DecodeError, match="exceeds"):
        codec.decode(data, max_bytes=len(data) - 1)
    with pytest.raises(DecodeError, match="magic"):
        codec.decode(b"XXXX" + data[4:])
    with pytest.raises(DecodeError, match="version"):
        codec.decode(data[:4] + b"\x02" + data[5:])
    with pytest.raises(DecodeError, match="type"):
        codec.decode(data[:5] + b"\x63" + data[6:])
    # a list count far beyond the bytes present is refused before allocating
    req = codec.encode(ConsistencyRequest(session_id=SID, round_index=3, receiver=1,
                                          survivors=(1, 7, 900)))  # list form: count at 31..35
    assert req[30] == 0 and req[31:35] == (3).to_bytes(4, "big")
    huge = req[:31] + (0xFFFFFF).to_bytes(4, "big") + req[35:]
    with pytest.raises(DecodeError, match=r"limit|fit"):
        codec.decode(huge)


def test_id_sets_use_the_shorter_canonical_form():
    dense = ConsistencyRequest(session_id=SID, round_index=0, receiver=1,
                               survivors=tuple(range(5, 10_005)))
    data = codec.encode(dense)
    assert len(data) < 26 + 4 + 9 + 10_000 // 8 + 2  # about one bit per client
    assert codec.decode(data) == dense
    sparse = ConsistencyRequest(session_id=SID, round_index=0, receiver=1,
                                survivors=(3, 4_000_000_000))
    assert codec.decode(codec.encode(sparse)) == sparse
    assert len(codec.encode(sparse)) == 26 + 4 + 1 + 4 + 8
    # the same dense set written as a list is refused (non-canonical)
    as_list = (codec.encode(dense)[:30] + b"\x00" + (10_000).to_bytes(4, "big")
               + b"".join(i.to_bytes(4, "big") for i in range(5, 10_005)))
    with pytest.raises(DecodeError, match="canonical"):
        codec.decode(as_list)
    # unsorted input is stored sorted (a set), so equal sets encode equally
    a = ConsistencyRequest(session_id=SID, round_index=3, receiver=1, survivors=(9, 1, 7))
    assert a.survivors == (1, 7, 9)
    assert codec.encode(a) == codec.encode(SAMPLES[6])


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_error(data):
    with contextlib.suppress(DecodeError):
        codec.decode(data)


_VALID = [codec.encode(m) for m in SAMPLES]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(0, 3),
)
def test_mutated_valid_frames_raise_only_decode_error(data, edits, mode):
    buf = bytearray(data)
    for pos, val in edits:
        pos %= len(buf)
        if mode == 0:
            buf[pos] = val
        elif mode == 1:
            del buf[pos]
        elif mode == 2:
            buf.insert(pos, val)
        else:
            buf[pos] ^= 1 << (val % 8)
    try:
        msg = codec.decode(bytes(buf))
    except DecodeError:
        return
    # If it decoded, it re-encodes to exactly the same bytes (canonical encoding).
    assert codec.encode(msg) == bytes(buf)


def test_id_lists_shared_by_many_messages_are_checked_once_and_stay_canonical():
    survivors = tuple(range(0, 200, 2))
    first = ConsistencyRequest(session_id=SID, round_index=3, receiver=1, survivors=survivors)
    second = UnmaskRequest(session_id=SID, round_index=3, receiver=2, survivors=survivors,
                           dropped=(5,))
    assert first.survivors is survivors and second.survivors is survivors
    # a generator or an unsorted list still comes out as an ascending tuple
    unsorted = ConsistencyRequest(session_id=SID, round_index=3, receiver=1,
                                  survivors=(c for c in reversed(survivors)))
    assert unsorted.survivors == survivors
    # a bad list is refused every time: it never becomes "known"
    bad = (*range(100), 3)
    for _ in range(2):
        with pytest.raises(ValueError, match="twice"):
            ConsistencyRequest(session_id=SID, round_index=3, receiver=1, survivors=bad)
