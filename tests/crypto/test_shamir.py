"""Tests for secagg_rec.crypto.shamir (vectorized Shamir sharing over GF(2^31 - 1))."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg_rec.crypto import shamir
from secagg_rec.crypto.random import DeterministicRandom
from secagg_rec.errors import DecodeError, ThresholdError

P = shamir.PRIME


class ScriptedRandom:
    """A RandomSource that returns the given little-endian uint32 words, in order."""

    def __init__(self, words: list[int]) -> None:
        self._data = b"".join(w.to_bytes(4, "little") for w in words)
        self.calls: list[int] = []

    def token_bytes(self, n: int) -> bytes:
        self.calls.append(n)
        if n > len(self._data):
            raise AssertionError(f"asked for {n} bytes, only {len(self._data)} scripted")
        out, self._data = self._data[:n], self._data[n:]
        return out


class CountingRandom:
    """Wraps a RandomSource and records each token_bytes call."""

    def __init__(self, inner: DeterministicRandom) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def token_bytes(self, n: int) -> bytes:
        self.calls.append(n)
        return self.inner.token_bytes(n)


def u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


# ----------------------------------------------------------- reference helpers


def solve_mod(matrix: list[list[int]], rhs: list[int]) -> list[int]:
    """Solve matrix @ x = rhs over GF(P) by Gauss-Jordan with Python ints."""
    size = len(rhs)
    aug = [[v % P for v in row] + [b % P] for row, b in zip(matrix, rhs, strict=True)]
    for col in range(size):
        pivot = next(r for r in range(col, size) if aug[r][col])
        aug[col], aug[pivot] = aug[pivot], aug[col]
        inv = pow(aug[col][col], -1, P)
        aug[col] = [v * inv % P for v in aug[col]]
        for r in range(size):
            if r != col and aug[r][col]:
                f = aug[r][col]
                aug[r] = [(a - f * b) % P for a, b in zip(aug[r], aug[col], strict=True)]
    return [aug[r][size] for r in range(size)]


def reference_lagrange(xs: list[int]) -> list[int]:
    out = []
    for j, xj in enumerate(xs):
        num, den = 1, 1
        for m, xm in enumerate(xs):
            if m != j:
                num = num * xm % P
                den = den * (xm - xj) % P
        out.append(num * pow(den, -1, P) % P)
    return out


# ------------------------------------------------------ the docstring example


def test_worked_example_from_module_docstring() -> None:
    # f(x) = 7 + 2147483000 x mod p; f(1) = 2147483007, f(2) = 2147482360 (wrapped).
    rng = ScriptedRandom([2147483000])
    shares = shamir.split([b"\x07"], [1, 2], 2, rng)
    assert shares == [[bytes.fromhex("7ffdff7f"), bytes.fromhex("f8faff7f")]]
    assert shamir.reconstruct({1: u32(2147483007), 2: u32(2147482360)}, 2, 1) == b"\x07"
    lam = shamir.lagrange_coefficients_at_zero(np.array([[1, 2]]))
    assert lam.tolist() == [[2, P - 1]]


def test_limbs_are_little_endian_30_bit_words_of_the_secret() -> None:
    # threshold 1 means degree-0 polynomials: each share *is* the limb vector.
    secret = bytes(range(1, 33))
    value = int.from_bytes(secret, "little")
    (shares,) = shamir.split([secret], [5], 1, ScriptedRandom([]))
    m = shamir.num_limbs(32)
    expected = b"".join(u32((value >> (30 * i)) & (2**30 - 1)) for i in range(m))
    assert shares[0] == expected


@pytest.mark.parametrize("secret_len", range(1, shamir.MAX_SECRET_LEN + 1))
def test_share_size_matches_layout(secret_len: int) -> None:
    assert shamir.share_size(secret_len) == 4 * -(-8 * secret_len // 30)
    shares = shamir.split([b"\xff" * secret_len], [1, 2, 3], 2, DeterministicRandom(1))
    assert {len(s) for s in shares[0]} == {shamir.share_size(secret_len)}
    assert shamir.reconstruct(dict(zip([1, 2, 3], shares[0], strict=True)), 2, secret_len) == (
        b"\xff" * secret_len
    )


# ------------------------------------------------------------------ randomness


def test_rejection_sampling_skips_words_equal_to_p_after_masking() -> None:
    # 0xFFFFFFFF and 0x7FFFFFFF both mask to p and are rejected; 0x80000000 | a -> a.
    plain = shamir.split([b"\x07"], [1, 2, 3], 2, ScriptedRandom([2147483000]))
    rejected = ScriptedRandom([0xFFFFFFFF, 0x7FFFFFFF, 2147483000])
    assert shamir.split([b"\x07"], [1, 2, 3], 2, rejected) == plain
    assert rejected.calls == [4, 4, 4]  # one refill per rejected word
    high_bit = shamir.split([b"\x07"], [1, 2, 3], 2, ScriptedRandom([0x80000000 | 2147483000]))
    assert high_bit == plain


def test_one_token_bytes_call_per_split() -> None:
    rng = CountingRandom(DeterministicRandom(b"count"))
    shamir.split([b"a" * 32, b"b" * 32], range(1, 101), 40, rng)
    m = shamir.num_limbs(32)
    assert rng.calls == [4 * 39 * 2 * m]


def test_deterministic_random_gives_reproducible_shares() -> None:
    secrets = [b"\x01" * 16, b"\x02" * 16]
    a = shamir.split(secrets, [1, 2, 3, 4], 3, DeterministicRandom(42))
    b = shamir.split(secrets, [1, 2, 3, 4], 3, DeterministicRandom(42))
    c = shamir.split(secrets, [1, 2, 3, 4], 3, DeterministicRandom(43))
    assert a == b
    assert a != c


# ------------------------------------------------------------- correctness


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_t_of_n_shares_reconstruct(data: st.DataObject) -> None:
    secret_len = data.draw(st.sampled_from([16, 32]) | st.integers(1, 64), label="len")
    count = data.draw(st.integers(1, 3), label="secrets")
    secrets = [data.draw(st.binary(min_size=secret_len, max_size=secret_len)) for _ in range(count)]
    xs = data.draw(
        st.lists(st.integers(1, P - 1), min_size=1, max_size=12, unique=True), label="xs"
    )
    t = data.draw(st.integers(1, len(xs)), label="t")
    seed = data.draw(st.integers(0, 2**32), label="seed")
    shares = shamir.split(secrets, xs, t, DeterministicRandom(seed))
    assert len(shares) == count and all(len(row) == len(xs) for row in shares)
    subset = data.draw(st.lists(st.sampled_from(range(len(xs))), min_size=t, unique=True))
    for i, secret in enumerate(secrets):
        assert shamir.reconstruct({xs[j]: shares[i][j] for j in subset}, t, secret_len) == secret


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_fewer_than_t_shares_raise_threshold_error(data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 10))
    t = data.draw(st.integers(2, n))
    shares = shamir.split([b"k" * 16], range(1, n + 1), t, DeterministicRandom(7))[0]
    keep = data.draw(st.lists(st.integers(0, n - 1), max_size=t - 1, unique=True))
    with pytest.raises(ThresholdError):
        shamir.reconstruct({j + 1: shares[j] for j in keep}, t, 16)


def test_threshold_error_names_the_short_item() -> None:
    shares = shamir.split([b"a" * 16, b"b" * 16], [1, 2, 3], 2, DeterministicRandom(3))
    items = [{1: shares[0][0], 2: shares[0][1]}, {3: shares[1][2]}]
    with pytest.raises(ThresholdError, match=r"item 1 has 1 shares"):
        shamir.reconstruct_many(items, 2, 16)


def test_lagrange_coefficients_match_python_reference() -> None:
    rnd = random.Random(5)
    for t in (1, 2, 3, 7, 29):
        sets = [sorted(rnd.sample(range(1, P), t)) for _ in range(6)]
        got = shamir.lagrange_coefficients_at_zero(np.array(sets, dtype=np.int64))
        assert got.tolist() == [reference_lagrange(s) for s in sets]


def test_shares_are_evaluations_of_a_degree_t_minus_1_polynomial() -> None:
    # Cross-check split against Python ints: recover the coefficients from t shares
    # by solving the Vandermonde system, then predict every other share.
    xs = [3, 10, 11, 500, 2**31 - 2, 77, 1]
    t = 4
    shares = shamir.split([b"\x5a"], xs, t, DeterministicRandom(9))[0]
    ys = [int.from_bytes(s, "little") for s in shares]
    coeffs = solve_mod([[pow(x, k, P) for k in range(t)] for x in xs[:t]], ys[:t])
    assert coeffs[0] == 0x5A
    for x, y in zip(xs, ys, strict=True):
        assert sum(c * pow(x, k, P) for k, c in enumerate(coeffs)) % P == y


# ------------------------------------------------------------------ privacy


def test_t_minus_1_shares_are_consistent_with_every_secret() -> None:
    """For a 1-byte secret, t = 3 and two observed holders, every candidate secret
    c in 0..255 is explained by exactly one coefficient vector (a1, a2): so the
    observed shares, whose coefficients are uniform, have the same distribution
    whatever the secret. We exhibit that vector as an rng stream and re-split."""
    xs, t, observed = [1, 2, 3, 4, 5], 3, [1, 4]  # indices of holders x = 2 and x = 5
    real = shamir.split([b"\xc3"], xs, t, DeterministicRandom(11))[0]
    seen = {xs[j]: int.from_bytes(real[j], "little") for j in observed}
    for candidate in range(256):
        # Solve a1 x + a2 x^2 = y_x - candidate for the two observed x.
        a = solve_mod([[x, x * x] for x in seen], [y - candidate for y in seen.values()])
        assert all(0 <= v < P for v in a)
        forged = shamir.split([bytes([candidate])], xs, t, ScriptedRandom(a))[0]
        assert [forged[j] for j in observed] == [real[j] for j in observed]


# -------------------------------------------------------------- decode errors


def test_wrong_length_share_raises_decode_error() -> None:
    shares = shamir.split([b"s" * 32], [1, 2, 3], 2, DeterministicRandom(1))[0]
    for bad in (shares[2][:-1], shares[2] + b"\x00", b""):
        # the bad share is not among the two used (smallest x) and is still caught
        with pytest.raises(DecodeError, match="x=3"):
            shamir.reconstruct({1: shares[0], 2: shares[1], 3: bad}, 2, 32)
    with pytest.raises(DecodeError):  # shares of a 32-byte secret read as 16-byte
        shamir.reconstruct({1: shares[0], 2: shares[1]}, 2, 16)


@pytest.mark.parametrize("limb", [P, P + 1, 0xFFFFFFFF])
def test_out_of_field_limb_raises_decode_error(limb: int) -> None:
    shares = shamir.split([b"s" * 16], [1, 2, 3], 2, DeterministicRandom(1))[0]
    bad = shares[1][:8] + u32(limb) + shares[1][12:]
    with pytest.raises(DecodeError, match="PRIME"):
        shamir.reconstruct({1: shares[0], 2: bad, 3: shares[2]}, 2, 16)


def test_inconsistent_shares_raise_decode_error() -> None:
    shares = shamir.split([b"s" * 32, b"u" * 32], [1, 2, 3, 4], 3, DeterministicRandom(1))
    # Mixing shares of two different secrets.
    with pytest.raises(DecodeError, match="inconsistent"):
        shamir.reconstruct({1: shares[0][0], 2: shares[0][1], 3: shares[1][2]}, 3, 32)
    # Shares made with t = 3 but reconstructed as if t = 2.
    with pytest.raises(DecodeError, match="inconsistent"):
        shamir.reconstruct({1: shares[0][0], 2: shares[0][1]}, 2, 32)
    # A tampered (still in-field) word.
    word = int.from_bytes(shares[0][1][32:36], "little")
    tampered = shares[0][1][:32] + u32((word + 12345) % P)
    with pytest.raises(DecodeError, match="inconsistent"):
        shamir.reconstruct({1: shares[0][0], 2: tampered, 3: shares[0][2]}, 3, 32)


def test_value_wider_than_the_secret_raises_decode_error() -> None:
    # t = 1: the share is the limb vector itself, so the width checks are direct.
    with pytest.raises(DecodeError, match="inconsistent"):
        shamir.reconstruct({1: u32(256)}, 1, 1)  # a 1-byte secret holds 0..255
    assert shamir.reconstruct({1: u32(255)}, 1, 1) == b"\xff"
    with pytest.raises(DecodeError, match="inconsistent"):  # full limb >= 2**30
        shamir.reconstruct({1: u32(2**30) + bytes(16)}, 1, 16)
    with pytest.raises(DecodeError, match="inconsistent"):  # top limb of 16 B has 8 bits
        shamir.reconstruct({1: bytes(16) + u32(256)}, 1, 16)


def test_the_shares_with_smallest_x_are_used() -> None:
    shares = shamir.split([b"z" * 16], [1, 2, 3, 4], 2, DeterministicRandom(8))[0]
    junk = u32(123456789) * 5  # in-field but inconsistent
    # Insertion order puts the junk share for x = 4 first; it must not be used.
    item = {4: junk, 2: shares[1], 1: shares[0]}
    assert shamir.reconstruct(item, 2, 16) == b"z" * 16
    # ... and a junk share for x = 1, inserted last, is used (and detected).
    with pytest.raises(DecodeError, match="inconsistent"):
        shamir.reconstruct({2: shares[1], 3: shares[2], 1: junk}, 2, 16)


# ------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("secrets", "xs", "t", "exc"),
    [
        ([b"a" * 16, b"b" * 32], [1, 2], 1, ValueError),  # mixed lengths
        ([b""], [1, 2], 1, ValueError),  # empty secret
        ([b"a" * 65], [1, 2], 1, ValueError),  # too long
        (["a" * 16], [1, 2], 1, TypeError),  # str, not bytes
        ([b"a" * 16], [1, 1], 1, ValueError),  # repeated x
        ([b"a" * 16], [0, 1], 1, ValueError),  # x = 0 would reveal the secret
        ([b"a" * 16], [1, P], 1, ValueError),  # x = p is x = 0
        ([b"a" * 16], [1, 2.0], 1, TypeError),
        ([b"a" * 16], [1, True], 1, TypeError),
        ([b"a" * 16], [], 1, ValueError),
        ([b"a" * 16], [1, 2], 0, ValueError),
        ([b"a" * 16], [1, 2], 3, ValueError),
        ([b"a" * 16], [1, 2], 1.5, TypeError),
    ],
)
def test_split_rejects_bad_arguments_before_drawing(secrets, xs, t, exc) -> None:
    rng = CountingRandom(DeterministicRandom(0))
    with pytest.raises(exc):
        shamir.split(secrets, xs, t, rng)
    assert rng.calls == []


def test_split_rejects_rng_without_token_bytes() -> None:
    with pytest.raises(TypeError):
        shamir.split([b"a" * 16], [1, 2], 2, object())  # type: ignore[arg-type]


def test_reconstruct_rejects_bad_arguments() -> None:
    shares = shamir.split([b"a" * 16], [1, 2], 2, DeterministicRandom(0))[0]
    good = {1: shares[0], 2: shares[1]}
    with pytest.raises(ValueError):
        shamir.reconstruct(good, 0, 16)
    with pytest.raises(ValueError):
        shamir.reconstruct(good, 2, 0)
    with pytest.raises(TypeError):
        shamir.reconstruct(good, 2.0, 16)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        shamir.reconstruct({0: shares[0], 2: shares[1]}, 2, 16)
    with pytest.raises(TypeError):
        shamir.reconstruct({"1": shares[0], 2: shares[1]}, 2, 16)  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        shamir.reconstruct({1: "x" * 20, 2: shares[1]}, 2, 16)  # type: ignore[dict-item]


def test_numpy_integer_holders_are_accepted() -> None:
    xs = np.arange(1, 6, dtype=np.int64)
    shares = shamir.split([b"n" * 16], list(xs), 3, DeterministicRandom(4))[0]
    assert shamir.reconstruct(dict(zip(xs[2:], shares[2:], strict=True)), 3, 16) == b"n" * 16


def test_empty_inputs() -> None:
    assert shamir.split([], [1, 2], 2, ScriptedRandom([])) == []
    assert shamir.reconstruct_many([], 2, 16) == []


# ------------------------------------------------------------------- batching


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_reconstruct_many_equals_one_by_one(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 15))
    t = data.draw(st.integers(1, n))
    count = data.draw(st.integers(1, 8))
    secrets = [bytes([i]) * 16 for i in range(count)]
    shares = shamir.split(secrets, range(1, n + 1), t, DeterministicRandom(count))
    items = []
    for i in range(count):
        holders = data.draw(st.lists(st.integers(0, n - 1), min_size=t, unique=True))
        items.append({h + 1: shares[i][h] for h in holders})
    batched = shamir.reconstruct_many(items, t, 16)
    assert batched == [shamir.reconstruct(item, t, 16) for item in items]
    assert batched == secrets


# ------------------------------------------------------------------- scale


def test_large_split_n2000_t1000_and_reconstruct() -> None:
    rng = DeterministicRandom(b"large")
    secrets = [rng.token_bytes(32), rng.token_bytes(16)[:16] * 2]
    xs = list(range(1, 2001))
    shares = shamir.split(secrets, xs, 1000, rng)
    for i, secret in enumerate(secrets):
        top = {x: shares[i][x - 1] for x in xs[1000:]}
        assert shamir.reconstruct(top, 1000, 32) == secret
    odd = {x: shares[0][x - 1] for x in xs[::2]}  # another 1000-subset
    assert shamir.reconstruct(odd, 1000, 32) == secrets[0]


def test_reconstruct_many_1000_secrets_from_1000_shares_each() -> None:
    """Shares of many secrets, built by linearity: if g is a sharing of the zero
    secret then s + c*g (limb-wise, mod p) is a sharing of s for any scalar c."""
    t, n, count, secret_len = 1000, 1000, 1000, 32
    rng = DeterministicRandom(b"many")
    zero_shares = shamir.split([bytes(secret_len)] * 2, range(1, n + 1), t, rng)
    m = shamir.num_limbs(secret_len)
    g = [
        np.frombuffer(b"".join(row), dtype="<u4").astype(np.int64).reshape(n, m)
        for row in zero_shares
    ]
    secrets = [rng.token_bytes(secret_len) for _ in range(count)]
    limbs = shamir._bytes_to_limbs(b"".join(secrets), count, secret_len).astype(np.int64)
    c = np.arange(count, dtype=np.int64)[:, None, None]
    all_shares = (limbs[:, None, :] + g[0][None] + c * g[1][None]) % P  # (count, n, m)
    blob = all_shares.astype("<u4").tobytes()
    size = 4 * m
    items = [
        {x + 1: blob[(i * n + x) * size : (i * n + x + 1) * size] for x in range(n)}
        for i in range(count)
    ]
    out = shamir.reconstruct_many(items, t, secret_len)
    assert out == secrets
    assert shamir.reconstruct(items[123], t, secret_len) == secrets[123]


def test_reconstruct_many_distinct_large_holder_sets() -> None:
    # Different chosen holder sets at large t exercise the chunked Lagrange path.
    n, t = 1200, 1000
    rng = DeterministicRandom(b"distinct")
    secrets = [rng.token_bytes(16) for _ in range(6)]
    shares = shamir.split(secrets, range(1, n + 1), t, rng)
    rnd = random.Random(2)
    items = [{h + 1: shares[i][h] for h in rnd.sample(range(n), t + i)} for i in range(6)]
    assert shamir.reconstruct_many(items, t, 16) == secrets
