"""Vectorized Shamir t-of-n secret sharing over GF(2^31 - 1) (hazmat layer).

Why this is hand-written
------------------------
Every client shares two secrets (its self-mask seed and its X25519 private key) to up
to several thousand holders, and the server reconstructs thousands of secrets in the
unmasking round. No well-kept Python library offers Shamir sharing vectorized over
holders and secrets. ``cryptography`` has no secret sharing at all; PyCryptodome's
``Shamir`` takes one 16-byte secret at a time and evaluates the polynomial share by
share with pure-Python GF(2^128) arithmetic. Flower's SecAgg+
(``flwr.common.secure_aggregation.crypto.shamir``) calls it once per 16-byte chunk and
pickles the shares, and that is the bottleneck of its rounds at a few hundred clients.
So this module implements the textbook scheme with numpy.

Design
------
* **Field.** GF(p) with ``p = PRIME = 2**31 - 1`` (a Mersenne prime). Two field
  elements multiply to less than 2**62, so a product is exact in ``uint64`` and
  reduction needs only shifts and masks (``x mod p = (x & p) + (x >> 31)``, folded
  twice) instead of a 64-bit division.
* **Limbs.** A secret of ``L`` bytes (1 <= L <= 64) is read as one little-endian
  integer and cut into ``m = ceil(8 L / 30)`` limbs of 30 bits, least significant
  first; the last limb holds the remaining ``8 L - 30 (m - 1)`` bits. 30 bits is the
  widest limb below p, so it gives the fewest limbs (16-byte secret: 5 limbs, 32-byte
  secret: 9 limbs, against 8 and 16 with 16-bit limbs), and it leaves headroom that
  catches inconsistent shares: a reconstructed limb that does not fit its bit width
  (probability about 1/2 per full limb, about 1 - 2**-23 for the 8-bit top limb of a
  16-byte secret when shares are garbage) raises :class:`~secagg_rec.errors.DecodeError`.
* **Sharing.** Limb ``l`` of secret ``i`` is the constant term of its own random
  polynomial ``f_il(x) = limb + a_1 x + ... + a_{t-1} x^(t-1)`` over GF(p); the
  ``a_j`` are uniform in [0, p). Holder ``x`` gets ``f_il(x)`` for every limb.
  Evaluation is Horner's rule vectorized over (holders x secrets x limbs): a Python
  loop of ``t - 1`` steps, each a handful of numpy operations on the whole array.
* **Reconstruction.** Lagrange interpolation at 0 from the ``threshold`` shares with
  the smallest ``x``: ``f(0) = sum_j y_j * prod_{m != j} x_m / (x_m - x_j)``. The
  coefficients are computed batched for many secrets whose holder sets differ
  (arrays shaped ``(num_sets, t, t)``, chunked), with inverses by Fermat
  exponentiation ``a**(p - 2)`` by squaring on whole arrays. Secrets whose chosen
  holder sets coincide (full SecAgg: every survivor holds a share of every dropped
  client) share one coefficient computation, and taking the *smallest* ``x`` makes
  such coincidences as frequent as possible.

Randomness
----------
All coefficients of one :func:`split` call come from **one** ``rng.token_bytes``
call (a second call happens only if rejection sampling discards a value, probability
about ``count * 2**-31``). The stream is read as little-endian ``uint32`` words; the
top bit of each word is cleared (uniform on [0, 2**31)) and the value ``2**31 - 1 = p``
is rejected, which leaves a uniform value on [0, p) with no bias. Replacements for
rejected words are drawn from the same source, in order. Word number
``((j - 1) * num_secrets + i) * num_limbs + l`` (after rejection) is coefficient
``a_j`` of limb ``l`` of secret ``i``; this fixes the known-answer vectors.

Share byte layout
-----------------
A share of an ``L``-byte secret is exactly ``share_size(L) = 4 * ceil(8 L / 30)``
bytes: for each limb ``l = 0 .. m-1`` in order, ``f_l(x)`` as an unsigned 32-bit
little-endian integer, which must be < p. The holder's ``x`` is *not* in the share;
the caller keeps it (the protocol uses client index + 1). 16-byte secret: 20 bytes;
32-byte secret: 36 bytes.

Worked example (by hand, with the real prime)
---------------------------------------------
p = 2147483647. Secret ``b"\\x07"`` (L = 1, one 8-bit limb, value 7), t = 2, holders
x = 1 and x = 2. Say the random coefficient is a_1 = 2147483000, so
``f(x) = 7 + 2147483000 x mod p``:

* ``f(1) = 2147483007`` (< p, no wrap). Share: ``0x7FFFFD7F`` little-endian =
  ``7f fd ff 7f``.
* ``f(2) = 7 + 4294966000 = 4294966007``; that is >= p, so subtract p once:
  ``4294966007 - 2147483647 = 2147482360``. Share: ``0x7FFFFAF8`` -> ``f8 fa ff 7f``.

Reconstruction at 0 from x = 1, 2: ``lambda_1 = x_2 / (x_2 - x_1) = 2 / 1 = 2`` and
``lambda_2 = x_1 / (x_1 - x_2) = 1 / (-1) = -1 = p - 1``. So
``f(0) = 2 * 2147483007 - 2147482360 = 2147483654 mod p = 2147483654 - 2147483647 = 7``:
the wrap-around of ``f(2)`` is undone by the wrap-around of the sum. One share alone
(``2147483007``) says nothing: for every candidate secret s there is exactly one a_1
(``a_1 = 2147483007 - s mod p``) that explains it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from secagg_rec.crypto.random import RandomSource
from secagg_rec.errors import DecodeError, ThresholdError

__all__ = [
    "LIMB_BITS",
    "MAX_SECRET_LEN",
    "PRIME",
    "lagrange_coefficients_at_zero",
    "num_limbs",
    "reconstruct",
    "reconstruct_many",
    "share_size",
    "split",
]

PRIME: int = 2**31 - 1
"""The field modulus p = 2**31 - 1 = 2147483647 (a Mersenne prime)."""

LIMB_BITS: int = 30
"""Secret bits per limb (the widest limb strictly below p)."""

MAX_SECRET_LEN: int = 64
"""Longest secret accepted, in bytes."""

_P = np.uint64(PRIME)
_S31 = np.uint64(31)
_WORD_MASK = np.uint32(0x7FFFFFFF)
# Reconstruction works on chunks of at most this many uint64 elements (8 bytes each),
# so the (sets, t, t) difference arrays stay around 32 MiB whatever the input size.
_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------- sizes


def num_limbs(secret_len: int) -> int:
    """Number of 30-bit limbs for a secret of ``secret_len`` bytes (1..64).

    Example: 16 bytes = 128 bits -> 5 limbs; 32 bytes = 256 bits -> 9 limbs.

    Raises:
        TypeError: ``secret_len`` is not an int.
        ValueError: ``secret_len`` is outside 1..64.
    """
    _check_secret_len(secret_len)
    return -(-8 * secret_len // LIMB_BITS)


def share_size(secret_len: int) -> int:
    """Bytes per share for a secret of ``secret_len`` bytes (1..64): 4 per limb.

    Example: ``share_size(16) == 20``, ``share_size(32) == 36``.

    Raises:
        TypeError: ``secret_len`` is not an int.
        ValueError: ``secret_len`` is outside 1..64.
    """
    return 4 * num_limbs(secret_len)


def _check_secret_len(secret_len: object) -> None:
    if not isinstance(secret_len, int) or isinstance(secret_len, bool):
        raise TypeError(f"secret_len must be an int, got {type(secret_len).__name__}")
    if not 1 <= secret_len <= MAX_SECRET_LEN:
        raise ValueError(f"secret_len must be in 1..{MAX_SECRET_LEN}, got {secret_len}")


def _check_threshold(threshold: object) -> None:
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise TypeError(f"threshold must be an int, got {type(threshold).__name__}")
    if threshold < 1:
        raise ValueError(f"threshold must be >= 1, got {threshold}")


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


# --------------------------------------------------------------------- field math


def _reduce(a: np.ndarray) -> np.ndarray:
    """Reduce uint64 values < 2**63 into [0, p), in place; returns ``a``.

    Two Mersenne folds ``a = (a & p) + (a >> 31)`` bring any value < 2**63 below
    2**31 + 2, and one conditional subtraction finishes.
    """
    tmp = a >> _S31
    a &= _P
    a += tmp
    np.right_shift(a, _S31, out=tmp)
    a &= _P
    a += tmp
    np.subtract(a, _P, out=a, where=a >= _P)
    return a


def _mulmod(a: np.ndarray, b: np.ndarray | np.uint64) -> np.ndarray:
    """``a * b mod p`` for uint64 arrays with entries < 2**31 (broadcasting)."""
    return _reduce(np.multiply(a, b, dtype=np.uint64))


def _prod_mod(a: np.ndarray) -> np.ndarray:
    """Product mod p along the last axis (entries in [0, p)), by a pairwise tree."""
    while a.shape[-1] > 1:
        width = a.shape[-1]
        half = width // 2
        head = _mulmod(a[..., :half], a[..., half : 2 * half])
        a = np.concatenate([head, a[..., 2 * half :]], axis=-1) if width % 2 else head
    return a[..., 0]


def _inv_mod(a: np.ndarray) -> np.ndarray:
    """Elementwise inverse mod p (entries in [1, p)) by Fermat: ``a**(p - 2)``.

    Square-and-multiply over the 31 bits of p - 2 = 0x7FFFFFFD, on whole arrays.
    Example: inverse of 2 is 1073741824, since 2 * 1073741824 = p + 1 = 1 mod p.
    """
    result = np.ones_like(a)
    base = a.copy()
    e = PRIME - 2
    while e:
        if e & 1:
            result = _mulmod(result, base)
        e >>= 1
        if e:
            base = _mulmod(base, base)
    return result


def lagrange_coefficients_at_zero(xs: np.ndarray) -> np.ndarray:
    """Lagrange coefficients for interpolation at 0, batched over rows.

    Args:
        xs: integer array shaped ``(num_sets, t)``; each row holds ``t`` distinct
            evaluation points in [1, p - 1] (not checked here).

    Returns:
        ``uint64`` array shaped like ``xs`` with
        ``lambda[s, j] = prod_{m != j} x[s, m] / (x[s, m] - x[s, j]) mod p``, so that
        ``f(0) = sum_j lambda[s, j] * f(x[s, j]) mod p`` for any polynomial of degree
        < t. Example: xs = [[1, 2]] gives [[2, p - 1]] (that is, 2 and -1).

    Cost is ``num_sets * t * t`` multiplications, done in chunks of bounded memory.
    """
    xs = np.asarray(xs, dtype=np.uint64)
    if xs.ndim != 2:
        raise ValueError(f"xs must be 2-D (num_sets, t), got shape {xs.shape}")
    num_sets, t = xs.shape
    out = np.empty((num_sets, t), dtype=np.uint64)
    if num_sets == 0 or t == 0:
        return out
    if t == 1:
        out[:] = 1
        return out
    rows = max(1, _CHUNK_ELEMENTS // (t * t))
    eye = np.eye(t, dtype=bool)
    for start in range(0, num_sets, rows):
        x = xs[start : start + rows]
        # diff[s, j, m] = x_m - x_j mod p, with 1 on the diagonal (m == j).
        diff = x[:, None, :] + (_P - x[:, :, None])
        diff[diff >= _P] -= _P
        diff[:, eye] = 1
        den = _prod_mod(diff)  # prod_{m != j} (x_m - x_j)
        total = _prod_mod(x)  # prod_m x_m
        # lambda_j = (prod_m x_m) / (x_j * den_j)
        inv = _inv_mod(_mulmod(x, den))
        out[start : start + rows] = _mulmod(inv, total[:, None])
    return out


# ------------------------------------------------------------- limbs <-> bytes


def _bytes_to_limbs(data: bytes, count: int, secret_len: int) -> np.ndarray:
    """``count`` secrets of ``secret_len`` bytes, concatenated -> uint64 (count, m)."""
    m = num_limbs(secret_len)
    raw = np.frombuffer(data, dtype=np.uint8).reshape(count, secret_len)
    bits = np.unpackbits(raw, axis=1, bitorder="little")
    padded = np.zeros((count, m * LIMB_BITS), dtype=np.uint64)
    padded[:, : 8 * secret_len] = bits
    weights = np.uint64(1) << np.arange(LIMB_BITS, dtype=np.uint64)
    return (padded.reshape(count, m, LIMB_BITS) * weights).sum(axis=2, dtype=np.uint64)


def _limbs_to_bytes(limbs: np.ndarray, secret_len: int) -> tuple[np.ndarray, np.ndarray]:
    """uint64 (count, m) limbs -> (uint8 (count, secret_len), bool (count,) ``fits``).

    ``fits[i]`` is False when a limb of secret ``i`` has bits above the secret's
    width (a full limb >= 2**30, or the top limb wider than its remaining bits).
    """
    count, m = limbs.shape
    shifts = np.arange(LIMB_BITS + 2, dtype=np.uint64)  # limbs < 2**31 have 31 bits
    bits = ((limbs[:, :, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    overflow = bits[:, :, LIMB_BITS:].any(axis=(1, 2))
    flat = bits[:, :, :LIMB_BITS].reshape(count, m * LIMB_BITS)
    overflow |= flat[:, 8 * secret_len :].any(axis=1)
    packed = np.packbits(flat[:, : 8 * secret_len], axis=1, bitorder="little")
    return packed, ~overflow


# ------------------------------------------------------------------- randomness


def _draw_field_elements(rng: RandomSource, count: int) -> np.ndarray:
    """``count`` uniform elements of [0, p) as uint64, by rejection sampling.

    One ``token_bytes(4 * count)`` call; words are little-endian uint32 with the top
    bit cleared; the value p = 2**31 - 1 is rejected and replaced from further draws.
    """
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    out = np.empty(0, dtype=np.uint32)
    need = count
    while need:
        raw = rng.token_bytes(4 * need)
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != 4 * need:
            raise TypeError("rng.token_bytes(n) must return exactly n bytes")
        words = np.frombuffer(raw, dtype="<u4") & _WORD_MASK
        words = words[words != _WORD_MASK]
        out = np.concatenate([out, words])
        need = count - out.size
    return out.astype(np.uint64)


# ------------------------------------------------------------------------ split


def split(
    secrets: Sequence[bytes], xs: Sequence[int], threshold: int, rng: RandomSource
) -> list[list[bytes]]:
    """Share each secret among the holders ``xs`` so that any ``threshold`` recover it.

    Args:
        secrets: byte strings, all of the same length ``L`` in 1..64 (16 for AES
            seeds, 32 for X25519 private keys). May be empty (returns ``[]``).
        xs: the holders' evaluation points: distinct ints in [1, PRIME - 1].
        threshold: ``t``, 1 <= t <= len(xs); each limb polynomial has degree t - 1.
        rng: where coefficients come from (:class:`~secagg_rec.crypto.random.SystemRandom`
            for real rounds); read once per call (see the module docstring).

    Returns:
        ``shares`` with ``shares[i][j]`` the share of ``secrets[i]`` for holder
        ``xs[j]``, each :func:`share_size` (L) bytes, laid out as in the module
        docstring.

    Raises:
        TypeError: a secret is not bytes-like, an x or the threshold is not an int,
            or ``rng`` has no ``token_bytes``.
        ValueError: secrets of different or unsupported lengths, xs empty, repeated or
            out of range, threshold out of range. All checks run before any work.
    """
    secrets = list(secrets)
    xs = list(xs)
    for i, s in enumerate(secrets):
        if not isinstance(s, (bytes, bytearray, memoryview)):
            raise TypeError(f"secrets[{i}] must be bytes, got {type(s).__name__}")
    lengths = {len(bytes(s)) for s in secrets}
    if len(lengths) > 1:
        raise ValueError(f"all secrets must have the same length, got {sorted(lengths)}")
    secret_len = lengths.pop() if lengths else None
    if secret_len is not None and not 1 <= secret_len <= MAX_SECRET_LEN:
        raise ValueError(f"secret length must be in 1..{MAX_SECRET_LEN}, got {secret_len}")
    for j, x in enumerate(xs):
        if not _is_int(x):
            raise TypeError(f"xs[{j}] must be an int, got {type(x).__name__}")
        if not 1 <= int(x) <= PRIME - 1:
            raise ValueError(f"xs[{j}] = {x} is outside [1, {PRIME - 1}]")
    if len({int(x) for x in xs}) != len(xs):
        raise ValueError("xs must be distinct")
    _check_threshold(threshold)
    if threshold > len(xs):
        raise ValueError(f"threshold {threshold} exceeds the number of holders {len(xs)}")
    if not callable(getattr(rng, "token_bytes", None)):
        raise TypeError("rng must provide token_bytes(n) -> bytes")
    if not secrets:
        return []
    assert secret_len is not None

    num_secrets = len(secrets)
    m = num_limbs(secret_len)
    cols = num_secrets * m
    limbs = _bytes_to_limbs(b"".join(bytes(s) for s in secrets), num_secrets, secret_len)
    coeffs = _draw_field_elements(rng, (threshold - 1) * cols).reshape(threshold - 1, cols)

    x = np.asarray([int(v) for v in xs], dtype=np.uint64)[:, None]
    n = x.shape[0]
    # Horner: acc = a_{t-1}; acc = acc * x + a_j for j = t-2 .. 1; then * x + limb.
    # Between steps acc < 2**31 + 2, so acc * x + a < 2**63 and _reduce applies.
    if threshold == 1:
        acc = np.broadcast_to(limbs.reshape(1, cols), (n, cols)).copy()
    else:
        acc = np.broadcast_to(coeffs[-1], (n, cols)).copy()
        tmp = np.empty_like(acc)
        constants = [*coeffs[-2::-1], limbs.reshape(cols)]
        for c in constants:
            acc *= x
            acc += c
            np.right_shift(acc, _S31, out=tmp)
            acc &= _P
            acc += tmp
            np.right_shift(acc, _S31, out=tmp)
            acc &= _P
            acc += tmp
        np.subtract(acc, _P, out=acc, where=acc >= _P)
    # acc[j, i * m + l] = f_il(x_j). Lay out as shares[i][j] = m little-endian u32s.
    words = acc.reshape(n, num_secrets, m).transpose(1, 0, 2).astype("<u4")
    blob = words.tobytes()
    size = 4 * m
    return [
        [blob[(i * n + j) * size : (i * n + j + 1) * size] for j in range(n)]
        for i in range(num_secrets)
    ]


# ------------------------------------------------------------------ reconstruct


def reconstruct(shares: Mapping[int, bytes], threshold: int, secret_len: int) -> bytes:
    """Recover one secret from at least ``threshold`` shares.

    Args:
        shares: holder x -> share bytes (as produced by :func:`split`). Exactly
            ``threshold`` of them are used: those with the smallest x. Every share
            given is checked for length and field range, used or not.
        threshold: the ``t`` the secret was split with (>= 1).
        secret_len: the secret's length in bytes (1..64).

    Returns:
        The secret, ``secret_len`` bytes.

    Raises:
        ThresholdError: fewer than ``threshold`` shares.
        DecodeError: a share of the wrong length, a limb >= PRIME, or a reconstructed
            limb wider than the secret's bit width (the shares are inconsistent:
            tampered, from different secrets, or split with another threshold).
        TypeError / ValueError: bad argument types, x outside [1, PRIME - 1],
            threshold < 1 or secret_len outside 1..64.
    """
    return reconstruct_many([shares], threshold, secret_len)[0]


def reconstruct_many(
    items: Sequence[Mapping[int, bytes]], threshold: int, secret_len: int
) -> list[bytes]:
    """Batched :func:`reconstruct`: one secret per mapping, holder sets may differ.

    Equal to ``[reconstruct(m, threshold, secret_len) for m in items]`` but
    vectorized; Lagrange coefficients are computed once per distinct set of chosen
    holders.

    Raises:
        ThresholdError: an item has fewer than ``threshold`` shares (the message names
            the first such item's index and its count).
        DecodeError / TypeError / ValueError: as in :func:`reconstruct`; messages name
            the item.
    """
    _check_threshold(threshold)
    _check_secret_len(secret_len)
    items = list(items)
    t = threshold
    size = share_size(secret_len)
    m = size // 4

    for idx, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TypeError(f"items[{idx}] must be a mapping x -> share, got {type(item)}")
        if len(item) < t:
            raise ThresholdError(f"item {idx} has {len(item)} shares, fewer than the threshold {t}")
    if not items:
        return []

    # Flatten every item's shares so that validation and selection are vectorized.
    counts = np.fromiter((len(item) for item in items), dtype=np.int64, count=len(items))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    keys_flat: list = []
    values_flat: list = []
    for item in items:
        keys_flat.extend(item.keys())
        values_flat.extend(item.values())

    def item_of(position: int) -> int:
        return int(np.searchsorted(offsets, position, side="right") - 1)

    if not set(map(type, keys_flat)) <= {int}:
        for pos, k in enumerate(keys_flat):
            if not _is_int(k):
                raise TypeError(f"item {item_of(pos)}: holder x must be an int, got {k!r}")
        keys_flat = [int(k) for k in keys_flat]
    if min(keys_flat) < 1 or max(keys_flat) > PRIME - 1:
        pos = next(i for i, k in enumerate(keys_flat) if not 1 <= k <= PRIME - 1)
        raise ValueError(
            f"item {item_of(pos)}: holder x = {keys_flat[pos]} is outside [1, {PRIME - 1}]"
        )
    try:
        lengths = np.fromiter(map(len, values_flat), dtype=np.int64, count=len(values_flat))
        blob = b"".join(values_flat)
    except TypeError:
        pos = next(i for i, v in enumerate(values_flat) if not isinstance(v, (bytes, bytearray)))
        raise TypeError(
            f"item {item_of(pos)}: shares must be bytes, got {type(values_flat[pos]).__name__}"
        ) from None
    if (lengths != size).any():
        pos = int(np.argmax(lengths != size))
        raise DecodeError(
            f"item {item_of(pos)}: the share for x={keys_flat[pos]} is {lengths[pos]} bytes, "
            f"want {size} for a {secret_len}-byte secret"
        )
    words = np.frombuffer(blob, dtype="<u4").reshape(len(values_flat), m)
    out_of_field = (words >= PRIME).any(axis=1)
    if out_of_field.any():
        pos = int(np.argmax(out_of_field))
        raise DecodeError(
            f"item {item_of(pos)}: the share for x={keys_flat[pos]} has a limb >= PRIME"
        )

    # Choose, per item, the t shares with the smallest x: sort by (item, x), then
    # take the first t positions of each item's segment.
    keys_arr = np.asarray(keys_flat, dtype=np.int64)
    combined = (np.repeat(np.arange(len(items), dtype=np.int64), counts) << 31) | keys_arr
    if (combined[1:] > combined[:-1]).all():  # already ascending (the common case)
        order = np.arange(combined.size)
    else:
        order = np.argsort(combined)
    selected = order[offsets[:-1, None] + np.arange(t)]  # (items, t)
    chosen = keys_arr[selected].astype(np.uint64)  # ascending within each row
    ys = words[selected]  # (items, t, m)

    # One Lagrange computation per distinct chosen holder set.
    # (A dict on the rows' bytes: np.unique(axis=0) sorts void records and is slow.)
    row_bytes = chosen.tobytes()
    width = 8 * t
    first_row: dict[bytes, int] = {}
    inverse = np.empty(len(items), dtype=np.int64)
    for i in range(len(items)):
        inverse[i] = first_row.setdefault(row_bytes[i * width : (i + 1) * width], len(first_row))
    representatives = np.empty(len(first_row), dtype=np.int64)
    representatives[inverse] = np.arange(len(items))  # any row of a group will do
    lam_unique = lagrange_coefficients_at_zero(chosen[representatives])

    # f(0) = sum_j lambda_j * y_j mod p. Each product (< 2**62) is folded once,
    # (x & p) + (x >> 31) < 2**32, which keeps it congruent mod p; a sum of t of those
    # is below t * 2**32 < 2**63 for any t < 2**31, and one _reduce finishes.
    limbs = np.empty((len(items), m), dtype=np.uint64)
    rows = max(1, _CHUNK_ELEMENTS // (t * m))
    for start in range(0, len(items), rows):
        stop = start + rows
        lam = lam_unique[inverse[start:stop]]  # (rows, t)
        prod = np.multiply(ys[start:stop], lam[:, :, None], dtype=np.uint64)
        folded = prod >> _S31
        prod &= _P
        prod += folded
        limbs[start:stop] = _reduce(prod.sum(axis=1, dtype=np.uint64))
    out, fits = _limbs_to_bytes(limbs, secret_len)
    if not fits.all():
        bad_items = np.nonzero(~fits)[0]
        raise DecodeError(
            f"item(s) {bad_items[:5].tolist()}: reconstructed value does not fit a "
            f"{secret_len}-byte secret; the shares are inconsistent (tampered, mixed "
            f"secrets, or a different threshold)"
        )
    return [row.tobytes() for row in out]
