"""X25519 key agreement and Ed25519 signatures, from ``cryptography``.

Private keys are made from 32 bytes of an injected :class:`~secagg_rec.crypto.random.RandomSource`
(the OS CSPRNG by default): X25519 clamps any 32-byte string into a valid scalar, so no
byte string is rejected. Public keys travel as their 32-byte raw encodings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from secagg_rec.crypto.random import RandomSource, default_random
from secagg_rec.errors import RemoteProtocolError

__all__ = [
    "KEY_BYTES",
    "SIGNATURE_BYTES",
    "KeyPair",
    "SigningKey",
    "agree",
    "public_from_private",
    "verify_signature",
]

KEY_BYTES = 32
SIGNATURE_BYTES = 64
_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw
_RAW_PRIV = serialization.PrivateFormat.Raw
_NOENC = serialization.NoEncryption()


@dataclass(frozen=True, repr=False)
class KeyPair:
    """An X25519 key pair; ``private`` is the 32 raw bytes (kept out of ``repr``).

    ``key`` is the parsed private key, kept so that repeated agreements do not
    re-parse it (parsing costs about as much as an agreement).
    """

    private: bytes
    public: bytes
    key: X25519PrivateKey = field(compare=False)

    @classmethod
    def generate(cls, rng: RandomSource | None = None) -> KeyPair:
        """A fresh key pair from 32 bytes of ``rng`` (default: OS CSPRNG)."""
        return cls.from_private(bytes((rng or default_random()).token_bytes(KEY_BYTES)))

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        """The key pair of 32 raw private bytes. Raises ValueError on bad length."""
        if len(private) != KEY_BYTES:
            raise ValueError(f"X25519 private key must be {KEY_BYTES} bytes, got {len(private)}")
        key = X25519PrivateKey.from_private_bytes(bytes(private))
        return cls(private=bytes(private), public=key.public_key().public_bytes(_RAW, _RAW_PUB),
                   key=key)

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.hex()})"


def public_from_private(private: bytes) -> bytes:
    """The raw X25519 public key of a 32-byte private key. Raises ValueError on bad length."""
    if len(private) != KEY_BYTES:
        raise ValueError(f"X25519 private key must be {KEY_BYTES} bytes, got {len(private)}")
    key = X25519PrivateKey.from_private_bytes(bytes(private))
    return key.public_key().public_bytes(_RAW, _RAW_PUB)


def agree(private: bytes | X25519PrivateKey | KeyPair, peer_public: bytes) -> bytes:
    """X25519 shared secret (32 bytes) of our private key and the peer's public key.

    ``private`` may be raw bytes, a parsed key or a :class:`KeyPair` (fastest when
    agreeing with many peers).

    Raises:
        RemoteProtocolError: the peer's public key is malformed or a low-order point
            (the agreement would be all zeros).
    """
    if isinstance(private, KeyPair):
        key = private.key
    elif isinstance(private, X25519PrivateKey):
        key = private
    else:
        key = X25519PrivateKey.from_private_bytes(bytes(private))
    try:
        peer = X25519PublicKey.from_public_bytes(bytes(peer_public))
        return key.exchange(peer)
    except ValueError as exc:
        raise RemoteProtocolError(f"invalid X25519 public key: {exc}") from exc


class SigningKey:
    """An Ed25519 signing key for the authenticated mode.

    Args:
        private: 32 raw private bytes; ``None`` draws them from ``rng``.
    """

    def __init__(self, private: bytes | None = None, rng: RandomSource | None = None) -> None:
        if private is None:
            private = (rng or default_random()).token_bytes(KEY_BYTES)
        if len(private) != KEY_BYTES:
            raise ValueError(f"Ed25519 private key must be {KEY_BYTES} bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(bytes(private))
        self.public: bytes = self._key.public_key().public_bytes(_RAW, _RAW_PUB)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._key.sign(data)

    def private_bytes(self) -> bytes:
        """The 32 raw private bytes (to store the key; handle with care)."""
        return self._key.private_bytes(_RAW, _RAW_PRIV, _NOENC)

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public.hex()})"


def verify_signature(public: bytes, signature: bytes, data: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``data`` under ``public``.

    Malformed keys or signatures give ``False``, never an exception.
    """
    if len(public) != KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public)).verify(bytes(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True
