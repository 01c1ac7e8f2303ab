"""Injected randomness for the protocol layer.

The sans-I/O sessions never touch a global RNG: every secret (key pairs, self-mask
seeds, Shamir coefficients, AEAD nonces) is drawn from a :class:`RandomSource` handed
in by the caller. The default, :class:`SystemRandom`, reads the OS CSPRNG
(``os.urandom``); :class:`DeterministicRandom` exists only so that tests and the
known-answer vectors in ``protocols/vectors/`` are reproducible, and must never be used
for a real round.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["DeterministicRandom", "RandomSource", "SystemRandom", "default_random"]


@runtime_checkable
class RandomSource(Protocol):
    """Anything that returns ``n`` uniformly random bytes."""

    def token_bytes(self, n: int) -> bytes:  # pragma: no cover - protocol
        """Return ``n`` random bytes (``n >= 0``)."""
        ...


class SystemRandom:
    """The OS CSPRNG (``os.urandom``). The only source to use for real rounds."""

    def token_bytes(self, n: int) -> bytes:
        """Return ``n`` bytes from ``os.urandom``. Raises ValueError if ``n < 0``."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return os.urandom(n)


class DeterministicRandom:
    """A reproducible byte stream: AES-256-CTR keyed by SHA-256 of ``seed``.

    For tests and known-answer vectors only. Two instances with the same seed return
    the same bytes in the same order.

    Args:
        seed: any bytes or a non-negative int.
    """

    def __init__(self, seed: bytes | int) -> None:
        from cryptography.hazmat.primitives import hashes

        if isinstance(seed, int):
            if seed < 0:
                raise ValueError(f"seed must be >= 0, got {seed}")
            seed = seed.to_bytes(max(1, (seed.bit_length() + 7) // 8), "big")
        digest = hashes.Hash(hashes.SHA256())
        digest.update(b"secagg_rec/test-only-deterministic-random/" + bytes(seed))
        key = digest.finalize()
        self._enc = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()

    def token_bytes(self, n: int) -> bytes:
        """Return the next ``n`` bytes of the stream. Raises ValueError if ``n < 0``."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return self._enc.update(b"\x00" * n)


_SYSTEM = SystemRandom()


def default_random() -> RandomSource:
    """The process-wide :class:`SystemRandom` instance."""
    return _SYSTEM
