"""A synthetic implicit-feedback dataset that needs no download.

Users and items get latent factors; item popularity is long-tailed (Zipf); each user
picks items without replacement with probability proportional to
``exp(popularity_i + affinity * <u, v_i> / sqrt(factors))`` (Gumbel top-k sampling);
the chosen items get increasing timestamps, some of them equal, so the
leave-one-out tie rule is exercised. The same arguments give the same dataset on every
machine (numpy's PCG64 generator seeded with ``seed``).
"""

from __future__ import annotations

import math

import numpy as np

from secagg_rec.rec.dataset import InteractionDataset

__all__ = ["make_synthetic"]

_START = 1_577_836_800  # 2020-01-01T00:00:00Z, seconds since the epoch
_SPREAD = 365 * 24 * 3600
_CHUNK_USERS = 256


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _check_float(name: str, value: object, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (low <= float(value) <= high):
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")
    return float(value)


def make_synthetic(
    *,
    n_users: int = 1000,
    n_items: int = 1000,
    factors: int = 8,
    min_interactions: int = 20,
    mean_interactions: float = 60.0,
    popularity_exponent: float = 1.0,
    affinity: float = 3.0,
    tie_probability: float = 0.2,
    seed: int = 0,
) -> InteractionDataset:
    """Generate a deterministic implicit-feedback dataset.

    Args:
        n_users: number of users, >= 1 (raw ids ``1..n_users``).
        n_items: number of items, >= ``min_interactions + 100`` so every user keeps at
            least 100 items never interacted with (99 evaluation negatives fit).
            Raw ids ``1..n_items``.
        factors: latent dimension of the user/item factors, >= 1.
        min_interactions: fewest interactions of a user, >= 3 (leave-one-out needs a
            train, a validation and a test item).
        mean_interactions: mean interactions per user, >= ``min_interactions``; the
            excess over the minimum is geometric (a long tail of heavy users), capped
            at ``n_items - 100``.
        popularity_exponent: Zipf exponent of item popularity, >= 0 (0: uniform).
        affinity: weight of the user-item factor match against popularity, >= 0
            (0: preferences are popularity only, so no personal signal).
        tie_probability: chance in [0, 1) that an interaction shares the timestamp of
            the one before it.
        seed: any non-negative int.

    Returns:
        An :class:`InteractionDataset` named ``"synthetic(seed=<seed>)"`` with exactly
        ``n_users`` users and ``n_items`` items (a rarely chosen item may have no
        interaction at all: it is still in the catalogue); ratings are
        1-5, higher for a better factor match; timestamps in 2020.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an argument out of range (see above).
    """
    n_users = _check_int("n_users", n_users, 1)
    min_interactions = _check_int("min_interactions", min_interactions, 3)
    n_items = _check_int("n_items", n_items, min_interactions + 100)
    factors = _check_int("factors", factors, 1)
    mean_interactions = _check_float("mean_interactions", mean_interactions, min_interactions)
    popularity_exponent = _check_float("popularity_exponent", popularity_exponent, 0.0)
    affinity = _check_float("affinity", affinity, 0.0)
    tie_probability = _check_float("tie_probability", tie_probability, 0.0, 1.0)
    if tie_probability >= 1.0:
        raise ValueError(f"tie_probability must be < 1, got {tie_probability}")
    seed = _check_int("seed", seed, 0)

    rng = np.random.default_rng(seed)
    user_factors = rng.normal(size=(n_users, factors))
    item_factors = rng.normal(size=(n_items, factors))
    popularity_rank = rng.permutation(n_items)
    log_popularity = -popularity_exponent * np.log1p(popularity_rank)
    excess = mean_interactions - min_interactions
    extra = rng.geometric(1.0 / (excess + 1.0), size=n_users) - 1
    counts = np.minimum(min_interactions + extra, n_items - 100)

    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    scale = affinity / math.sqrt(factors)
    for start in range(0, n_users, _CHUNK_USERS):
        stop = min(start + _CHUNK_USERS, n_users)
        match = user_factors[start:stop] @ item_factors.T
        keys = log_popularity + scale * match + rng.gumbel(size=match.shape)
        for row, user in enumerate(range(start, stop)):
            k = int(counts[user])
            chosen = np.argpartition(-keys[row], k - 1)[:k]
            chosen = rng.permutation(chosen)  # interaction order
            users.append(np.full(k, user, dtype=np.int64))
            items.append(chosen.astype(np.int64))
            scores.append(match[row, chosen])

    user_arr = np.concatenate(users)
    item_arr = np.concatenate(items)
    match_arr = np.concatenate(scores)
    gaps = rng.exponential(3600.0, size=user_arr.size).astype(np.int64) + 1
    gaps[rng.random(user_arr.size) < tie_probability] = 0
    first = np.r_[True, user_arr[1:] != user_arr[:-1]]
    user_start = _START + rng.integers(0, _SPREAD, size=n_users)
    gaps[first] = 0
    offsets = np.cumsum(gaps)
    offsets -= np.repeat(offsets[first], counts)
    timestamps = user_start[user_arr] + offsets
    z = (match_arr - match_arr.mean()) / (match_arr.std() + 1e-12)
    ratings = np.clip(np.rint(3.5 + z), 1, 5).astype(np.float32)
    return InteractionDataset(
        users=user_arr,
        items=item_arr,
        timestamps=timestamps,
        ratings=ratings,
        user_ids=np.arange(1, n_users + 1),
        item_ids=np.arange(1, n_items + 1),
        name=f"synthetic(seed={seed})",
    )
