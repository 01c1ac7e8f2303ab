"""Domain-separated key derivation: HKDF-SHA256 (RFC 5869) from ``cryptography``.

Every derived key is bound to what it is for and to whom: the HKDF ``info`` string is
``b"secagg_rec/v1/" + label + b"\\x00" + session_id + round + id_lo + id_hi`` where
``round``, ``id_lo`` and ``id_hi`` are big-endian unsigned 32-bit integers and the two
client ids are in canonical (ascending) order, so both ends of a pair derive the same
key. The salt is empty (HKDF then uses a zero block), since the input keying material
is a fresh X25519 shared secret. The labels in use are listed in :data:`LABELS` and
documented byte for byte in ``protocols/secagg.md``.

Example (the info string for a pairwise mask seed, session ``00..0f``, round 3,
clients 7 and 2)::

    b"secagg_rec/v1/pairwise-mask\\x00" + bytes(range(16))
    + b"\\x00\\x00\\x00\\x03" + b"\\x00\\x00\\x00\\x02" + b"\\x00\\x00\\x00\\x07"
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["LABELS", "PREFIX", "derive_key", "kdf_info"]

PREFIX = b"secagg_rec/v1/"

#: Purposes a key may be derived for. Any other label is refused.
LABELS: frozenset[str] = frozenset(
    {
        "pairwise-mask",  # seed of the pairwise mask PRG, from the mask-key agreement
        "share-encryption",  # AES-256-GCM key for share ciphertexts, from the channel agreement
        "neighbour-graph",  # key of the PRG that permutes clients for the SecAgg+ graph
    }
)

_U32_MAX = 0xFFFFFFFF
SESSION_ID_BYTES = 16


def kdf_info(label: str, session_id: bytes, round_index: int, id_a: int, id_b: int) -> bytes:
    """Return the HKDF ``info`` string for ``label`` and the two ids (order-free).

    Raises:
        ValueError: unknown label, session id not 16 bytes, or an integer outside
            ``[0, 2**32)``.
    """
    if label not in LABELS:
        raise ValueError(f"unknown KDF label {label!r}; known: {sorted(LABELS)}")
    if not isinstance(session_id, (bytes, bytearray)) or len(session_id) != SESSION_ID_BYTES:
        raise ValueError(f"session_id must be {SESSION_ID_BYTES} bytes")
    for name, value in (("round_index", round_index), ("id_a", id_a), ("id_b", id_b)):
        if not isinstance(value, int) or not 0 <= value <= _U32_MAX:
            raise ValueError(f"{name} must be an int in [0, 2**32), got {value!r}")
    lo, hi = sorted((id_a, id_b))
    return (
        PREFIX
        + label.encode("ascii")
        + b"\x00"
        + bytes(session_id)
        + round_index.to_bytes(4, "big")
        + lo.to_bytes(4, "big")
        + hi.to_bytes(4, "big")
    )


def derive_key(
    secret: bytes,
    label: str,
    session_id: bytes,
    round_index: int,
    id_a: int,
    id_b: int,
    length: int = 32,
) -> bytes:
    """HKDF-SHA256 of ``secret`` bound to ``label``, session, round and both ids.

    Args:
        secret: input keying material (e.g. a 32-byte X25519 shared secret).
        label: one of :data:`LABELS`.
        session_id: 16 bytes.
        round_index: the training round, ``[0, 2**32)``.
        id_a, id_b: the two client ids, any order, ``[0, 2**32)``.
        length: output bytes, 16 or 32.

    Raises:
        ValueError: as :func:`kdf_info`, or ``length`` not 16 or 32.
    """
    if length not in (16, 32):
        raise ValueError(f"length must be 16 or 32 bytes, got {length}")
    info = kdf_info(label, session_id, round_index, id_a, id_b)
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)
