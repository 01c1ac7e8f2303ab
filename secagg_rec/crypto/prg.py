"""Mask expansion: a full-width seed -> a vector uniform over Z_{2^b}, with AES-CTR.

Definition (normative; ``protocols/secagg.md`` repeats it and the known-answer vectors
check it): the seed (16 bytes -> AES-128, 32 bytes -> AES-256, never truncated) keys AES
in CTR mode with a 128-bit big-endian counter starting at zero (initial counter block
= 16 zero bytes). The keystream is cut into words of ``W`` bytes, ``W = 4`` when
``bits <= 32`` and ``W = 8`` otherwise; word ``i`` is keystream bytes
``[W*i, W*(i+1))`` read as an unsigned little-endian integer, reduced mod ``2**bits``
(i.e. its low ``bits`` bits). Because ``2**bits`` divides ``2**(8W)``, each word is
exactly uniform over ``[0, 2**bits)``: every value is reachable, with no modulo bias and
no off-by-one at the top.

Worked example with ``bits = 3`` (ring Z_8): keystream bytes ``ff 00 00 00`` give word
``0x000000ff = 255`` and ``255 mod 8 = 7 = 0b111``; bytes ``08 00 00 00`` give ``8 mod
8 = 0``. Masking ``x = 5`` with ``7`` gives ``(5 + 7) mod 8 = 4``; removing it gives
``(4 - 7) mod 8 = 5`` again.

Speed: keystream is produced chunk by chunk with ``update_into`` into one preallocated
buffer (``update()`` on large inputs is allocation-bound), and each chunk is added into
the accumulator in place. :meth:`MaskExpander.accumulate_many` runs chunk-outer,
seed-inner, so one slice of the accumulator stays in cache while every seed's keystream
is added to it. Arithmetic runs mod ``2**(8W)`` with numpy's wrapping unsigned
integers; the reduction mod ``2**bits`` happens once, at the end, which is exact since
``2**bits`` divides ``2**(8W)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["MAX_BITS", "MaskExpander", "expand_mask", "reduce_words", "word_dtype"]

MAX_BITS = 62
_ZERO_IV = b"\x00" * 16
_DEFAULT_CHUNK_BYTES = 1 << 18  # 256 KiB: large enough to amortize per-call overhead


def word_dtype(bits: int) -> np.dtype:
    """Word type for ring Z_{2^bits}: uint32 for bits <= 32, else uint64.

    Raises:
        ValueError: ``bits`` outside ``[1, 62]``.
    """
    if not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an int in [1, {MAX_BITS}], got {bits!r}")
    return np.dtype(np.uint32) if bits <= 32 else np.dtype(np.uint64)


def reduce_words(words: np.ndarray, bits: int) -> np.ndarray:
    """Reduce ``words`` mod ``2**bits`` in place and return them."""
    if bits < 8 * words.dtype.itemsize:
        np.bitwise_and(words, words.dtype.type((1 << bits) - 1), out=words)
    return words


def _check_seed(seed: bytes) -> bytes:
    if not isinstance(seed, (bytes, bytearray)) or len(seed) not in (16, 32):
        raise ValueError("mask seed must be 16 or 32 bytes (AES-128 / AES-256)")
    return bytes(seed)


class MaskExpander:
    """Expands seeds into masks of ``length`` words and adds them into accumulators.

    One expander owns its scratch buffers; reuse it for many seeds (it is not
    thread-safe; use one per thread or process).

    Args:
        length: words per mask, ``>= 0``.
        bits: ring Z_{2^bits}, ``1 <= bits <= 62``.
        chunk_bytes: keystream produced per ``update_into`` call (multiple of 16).

    Raises:
        ValueError: bad ``length``, ``bits`` or ``chunk_bytes``.
    """

    def __init__(self, length: int, bits: int, *, chunk_bytes: int = _DEFAULT_CHUNK_BYTES):
        if not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be an int >= 0, got {length!r}")
        if chunk_bytes <= 0 or chunk_bytes % 16:
            raise ValueError("chunk_bytes must be a positive multiple of 16")
        self.length = length
        self.bits = bits
        self.dtype = word_dtype(bits)
        self._wsize = self.dtype.itemsize
        self._chunk_words = chunk_bytes // self._wsize
        n = min(self._chunk_words, max(length, 1)) * self._wsize
        self._zeros = memoryview(bytes(n))
        # update_into needs room for len(data) + block_size - 1 bytes of output.
        self._out = np.empty(n + 16, dtype=np.uint8)
        self._out_mv = memoryview(self._out)

    def new_accumulator(self) -> np.ndarray:
        """A zeroed accumulator of ``length`` words of this expander's dtype."""
        return np.zeros(self.length, dtype=self.dtype)

    def accumulate(self, acc: np.ndarray, seed: bytes, sign: int = 1) -> None:
        """``acc += sign * mask(seed)`` mod ``2**(8W)``, in place.

        ``acc`` keeps full-width words; call :func:`reduce_words` once at the end.

        Raises:
            ValueError: seed not 16/32 bytes, sign not +-1, or ``acc`` of the wrong
                shape or dtype.
        """
        self.accumulate_many(acc, [(seed, sign)])

    def accumulate_many(self, acc: np.ndarray, seeds: Sequence[tuple[bytes, int]]) -> None:
        """``acc += sum(sign * mask(seed) for seed, sign in seeds)``, in place.

        Same contract as :meth:`accumulate`; all arguments are checked before any work.
        """
        if acc.dtype != self.dtype or acc.shape != (self.length,):
            raise ValueError(
                f"accumulator must be {self.dtype} of shape ({self.length},), "
                f"got {acc.dtype} {acc.shape}"
            )
        streams = []
        for seed, sign in seeds:
            key = _check_seed(seed)
            if sign not in (1, -1):
                raise ValueError("sign must be +1 or -1")
            enc = Cipher(algorithms.AES(key), modes.CTR(_ZERO_IV)).encryptor()
            streams.append((enc, np.add if sign == 1 else np.subtract))
        if not streams:
            return
        step = self._chunk_words
        wsize = self._wsize
        out_mv = self._out_mv
        zeros = self._zeros
        for start in range(0, self.length, step):
            stop = min(start + step, self.length)
            nbytes = (stop - start) * wsize
            words = self._out[:nbytes].view(self.dtype)
            target = acc[start:stop]
            for enc, op in streams:
                enc.update_into(zeros[:nbytes], out_mv)
                op(target, words, out=target)

    def mask(self, seed: bytes) -> np.ndarray:
        """The mask of ``seed`` as a new array of words in ``[0, 2**bits)``."""
        acc = self.new_accumulator()
        self.accumulate(acc, seed, 1)
        return reduce_words(acc, self.bits)


def expand_mask(seed: bytes, length: int, bits: int) -> np.ndarray:
    """One-shot :meth:`MaskExpander.mask`: ``length`` words uniform over Z_{2^bits}."""
    return MaskExpander(length, bits).mask(seed)
