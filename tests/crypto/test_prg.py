"""Mask expansion: definition (checked against raw AES blocks), uniformity, seed sensitivity."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from scipy import stats

from secagg_rec.crypto.prg import MaskExpander, expand_mask, word_dtype


def _reference_words(seed: bytes, length: int, bits: int) -> list[int]:
    """Independent reading of the definition: AES-ECB on explicit counter blocks."""
    width = 4 if bits <= 32 else 8
    ecb = Cipher(algorithms.AES(seed), modes.ECB()).encryptor()
    nblocks = (length * width + 15) // 16
    stream = b"".join(ecb.update(i.to_bytes(16, "big")) for i in range(nblocks))
    return [
        int.from_bytes(stream[i * width : (i + 1) * width], "little") % (1 << bits)
        for i in range(length)
    ]


@pytest.mark.parametrize("bits", [1, 7, 31, 32, 33, 48, 62])
@pytest.mark.parametrize("seed_len", [16, 32])
def test_matches_definition(bits, seed_len):
    seed = bytes((i * 37 + bits) % 256 for i in range(seed_len))
    got = expand_mask(seed, 1001, bits)
    assert got.dtype == word_dtype(bits)
    assert got.tolist() == _reference_words(seed, 1001, bits)


def test_chunking_does_not_change_the_mask():
    seed = b"\x01" * 16
    a = MaskExpander(10_007, 40, chunk_bytes=64).mask(seed)
    b = MaskExpander(10_007, 40).mask(seed)
    assert np.array_equal(a, b)


def test_accumulate_many_equals_sum_of_masks():
    seeds = [bytes([i]) * 16 for i in range(5)]
    signs = [1, -1, 1, 1, -1]
    ex = MaskExpander(3000, 20, chunk_bytes=1024)
    acc = ex.new_accumulator()
    ex.accumulate_many(acc, list(zip(seeds, signs, strict=True)))
    acc &= np.uint32((1 << 20) - 1)
    ref = sum(s * np.array(_reference_words(k, 3000, 20), dtype=object) for k, s in
              zip(seeds, signs, strict=True))
    assert acc.tolist() == [int(v) % (1 << 20) for v in ref]


@pytest.mark.parametrize("bits", [8, 32, 62])
def test_words_are_uniform_over_the_ring(bits):
    raw = expand_mask(b"\x5a" * 16, 200_000, bits)
    if bits <= 16:  # chi-square over every value of the ring
        counts = np.bincount(raw.astype(np.int64), minlength=1 << bits)
        assert stats.chisquare(counts).pvalue > 1e-4
        return
    words = raw.astype(np.float64)
    # chi-square on 64 equal buckets of the ring, and a KS test on the scaled words
    buckets = np.floor(words / 2.0**bits * 64).astype(int)
    counts = np.bincount(buckets, minlength=64)
    assert stats.chisquare(counts).pvalue > 1e-4
    assert stats.kstest(words / 2.0**bits, "uniform").pvalue > 1e-4


def test_every_value_reachable_including_the_top_of_the_ring():
    words = expand_mask(b"\x11" * 16, 4096, 3)
    assert set(words.tolist()) == set(range(8))
    top = expand_mask(b"\x22" * 16, 1 << 14, 12)
    assert int(top.max()) == (1 << 12) - 1 and int(top.min()) == 0


def test_flipping_any_seed_bit_changes_the_mask():
    seed = bytes(range(16))
    base = expand_mask(seed, 64, 32)
    for bit in range(128):
        flipped = bytearray(seed)
        flipped[bit // 8] ^= 1 << (bit % 8)
        other = expand_mask(bytes(flipped), 64, 32)
        # about half of all bits differ: far from equal
        assert np.count_nonzero(base != other) > 60


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        expand_mask(b"short", 4, 8)
    with pytest.raises(ValueError):
        expand_mask(b"\x00" * 16, 4, 63)
    ex = MaskExpander(4, 8)
    with pytest.raises(ValueError):
        ex.accumulate(np.zeros(5, np.uint32), b"\x00" * 16)
    with pytest.raises(ValueError):
        ex.accumulate(ex.new_accumulator(), b"\x00" * 16, sign=2)
