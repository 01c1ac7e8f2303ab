"""AES-256-GCM for share ciphertexts, bound to session, round, sender and receiver.

Layout of a sealed box: ``nonce (12 bytes) || ciphertext || tag (16 bytes)``. The
associated data is ``b"secagg_rec/v1/share\\x00" + session_id + round + sender +
receiver`` (integers big-endian u32, sender first: direction matters here). The key is
symmetric between two clients (both ends derive it from the same X25519 agreement), so
nonces are drawn at random from the injected source: two boxes, one per direction, are
all that is ever sealed under one key.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secagg_rec.crypto.random import RandomSource, default_random
from secagg_rec.errors import DecryptionError

__all__ = ["NONCE_BYTES", "OVERHEAD_BYTES", "TAG_BYTES", "associated_data", "open_box", "seal"]

NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD_BYTES = NONCE_BYTES + TAG_BYTES


def associated_data(session_id: bytes, round_index: int, sender: int, receiver: int) -> bytes:
    """The AEAD associated data binding a share box to its context."""
    return (
        b"secagg_rec/v1/share\x00"
        + bytes(session_id)
        + round_index.to_bytes(4, "big")
        + sender.to_bytes(4, "big")
        + receiver.to_bytes(4, "big")
    )


def seal(key: bytes, plaintext: bytes, ad: bytes, rng: RandomSource | None = None) -> bytes:
    """Encrypt and authenticate ``plaintext`` under a 32-byte ``key``.

    Raises:
        ValueError: key not 32 bytes.
    """
    if len(key) != 32:
        raise ValueError("AES-256-GCM key must be 32 bytes")
    nonce = (rng or default_random()).token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, ad)


def open_box(key: bytes, box: bytes, ad: bytes) -> bytes:
    """Decrypt a box made by :func:`seal`.

    Raises:
        DecryptionError: the box is too short, was tampered with, or was sealed under
            another key or associated data (another session, round, sender or receiver).
    """
    if len(box) < OVERHEAD_BYTES:
        raise DecryptionError(f"share ciphertext too short ({len(box)} bytes)")
    try:
        return AESGCM(key).decrypt(box[:NONCE_BYTES], box[NONCE_BYTES:], ad)
    except InvalidTag as exc:
        raise DecryptionError("share ciphertext failed authentication") from exc
