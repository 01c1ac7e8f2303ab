"""KDF domain separation, AEAD binding, key agreement and signatures."""

from __future__ import annotations

import pytest

from secagg_rec.crypto import aead
from secagg_rec.crypto.kdf import derive_key, kdf_info
from secagg_rec.crypto.keys import KeyPair, SigningKey, agree, verify_signature
from secagg_rec.crypto.random import DeterministicRandom, SystemRandom
from secagg_rec.errors import DecryptionError, RemoteProtocolError

SID = bytes(range(16))


def test_kdf_info_layout_and_canonical_order():
    info = kdf_info("pairwise-mask", SID, 3, 7, 2)
    assert info == (
        b"secagg_rec/v1/pairwise-mask\x00" + SID + b"\x00\x00\x00\x03"
        + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x07"
    )
    assert derive_key(b"k" * 32, "pairwise-mask", SID, 3, 7, 2) == derive_key(
        b"k" * 32, "pairwise-mask", SID, 3, 2, 7
    )


def test_kdf_domain_separation():
    base = derive_key(b"k" * 32, "pairwise-mask", SID, 3, 1, 2)
    variants = [
        derive_key(b"k" * 32, "share-encryption", SID, 3, 1, 2),
        derive_key(b"k" * 32, "pairwise-mask", bytes(16), 3, 1, 2),
        derive_key(b"k" * 32, "pairwise-mask", SID, 4, 1, 2),
        derive_key(b"k" * 32, "pairwise-mask", SID, 3, 1, 3),
        derive_key(b"j" * 32, "pairwise-mask", SID, 3, 1, 2),
    ]
    assert len({base, *variants}) == 6
    assert len(derive_key(b"k" * 32, "pairwise-mask", SID, 3, 1, 2, 16)) == 16
    with pytest.raises(ValueError, match="label"):
        derive_key(b"k", "made-up", SID, 0, 1, 2)


def test_x25519_agreement_is_symmetric_and_rejects_low_order_points():
    a, b = KeyPair.generate(), KeyPair.generate()
    assert agree(a.private, b.public) == agree(b.private, a.public)
    with pytest.raises(RemoteProtocolError):
        agree(a.private, bytes(32))  # the all-zero point gives an all-zero secret


def test_aead_binds_session_round_sender_and_receiver():
    key = b"K" * 32
    ad = aead.associated_data(SID, 1, 5, 6)
    box = aead.seal(key, b"share", ad)
    assert aead.open_box(key, box, ad) == b"share"
    for other in (
        aead.associated_data(bytes(16), 1, 5, 6),
        aead.associated_data(SID, 2, 5, 6),
        aead.associated_data(SID, 1, 6, 5),
        aead.associated_data(SID, 1, 5, 7),
    ):
        with pytest.raises(DecryptionError):
            aead.open_box(key, box, other)
    with pytest.raises(DecryptionError):
        aead.open_box(b"L" * 32, box, ad)
    with pytest.raises(DecryptionError):
        aead.open_box(key, box[:-1] + bytes([box[-1] ^ 1]), ad)
    with pytest.raises(DecryptionError):
        aead.open_box(key, box[:10], ad)


def test_signatures():
    key = SigningKey()
    sig = key.sign(b"data")
    assert verify_signature(key.public, sig, b"data")
    assert not verify_signature(key.public, sig, b"datA")
    assert not verify_signature(SigningKey().public, sig, b"data")
    assert not verify_signature(key.public, b"short", b"data")


def test_random_sources():
    assert len(SystemRandom().token_bytes(32)) == 32
    assert SystemRandom().token_bytes(16) != SystemRandom().token_bytes(16)
    a, b = DeterministicRandom(5), DeterministicRandom(5)
    assert a.token_bytes(10) + a.token_bytes(6) == b.token_bytes(16)
    assert DeterministicRandom(6).token_bytes(16) != DeterministicRandom(5).token_bytes(16)
    with pytest.raises(ValueError):
        SystemRandom().token_bytes(-1)
