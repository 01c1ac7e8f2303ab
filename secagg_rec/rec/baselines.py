"""Non-learned baselines as scorers for :mod:`secagg_rec.rec.evaluate`.

* :func:`random_scorer`: a pure function of ``(seed, user, item)``, uniform in
  ``[0, 1)``; expected HR@10 on the sampled protocol is 10/100 = 0.10.
* :func:`popularity_scorer`: an item's number of training interactions, the same for
  every user. Many items share a count, so the evaluator's random tie-break matters.

The learned baselines (MF, NeuMF, logistic regression) live in
:mod:`secagg_rec.rec.models` and are trained by :mod:`secagg_rec.rec.centralized`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from secagg_rec.rec.splits import LeaveOneOutSplit

__all__ = ["popularity_scorer", "random_scorer"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer (Steele, Lea, Flood 2014) on uint64 arrays."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def random_scorer(seed: int = 0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A scorer giving each (user, item) an independent uniform score in ``[0, 1)``.

    Deterministic: the score depends only on ``(seed, user, item)``, not on batching
    or call order.

    Raises:
        ValueError: ``seed < 0``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    seed_hash = _splitmix64(np.array([seed], dtype=np.uint64))[0]

    def score(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        u = np.asarray(users, dtype=np.int64).astype(np.uint64)
        i = np.asarray(items, dtype=np.int64).astype(np.uint64)
        with np.errstate(over="ignore"):
            h = _splitmix64(_splitmix64(u ^ seed_hash) ^ i)
        return torch.from_numpy((h >> np.uint64(11)).astype(np.float64) * 2.0**-53)

    return score


def popularity_scorer(
    split: LeaveOneOutSplit,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A scorer giving each item its number of training interactions (any user).

    Raises:
        TypeError: ``split`` is not a LeaveOneOutSplit.
    """
    if not isinstance(split, LeaveOneOutSplit):
        raise TypeError(f"split must be a LeaveOneOutSplit, got {type(split).__name__}")
    counts = torch.from_numpy(split.train_item_counts().astype(np.float64))

    def score(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return counts[torch.as_tensor(items, dtype=torch.int64)]

    return score
