"""Negative sampling: items a user has not interacted with, deterministic by seed.

Two uses:

* evaluation negatives (:func:`sample_unseen` with ``distinct=True``), drawn once by
  :func:`secagg_rec.rec.splits.leave_one_out_split`;
* training examples (:func:`user_training_examples`): each positive plus
  ``negatives_per_positive`` items drawn uniformly, with replacement, from the items
  the user has no *training* interaction with (the NCF recipe, default 4). Held-out
  validation/test items are not excluded, as in NCF: excluding them would tell the
  model which unseen items are the answers.

Every user's examples come from their own generator, seeded by
``(seed, epoch, user)``, so a client that holds only its own training items and the
item count builds exactly the examples the centralized trainer would build for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from secagg_rec.rec.splits import LeaveOneOutSplit

__all__ = [
    "TrainingExamples",
    "sample_unseen",
    "training_examples",
    "user_training_examples",
]

_TRAIN_STREAM = 0  # distinguishes training draws from evaluation draws (splits.py)


def _check_nonneg_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def sample_unseen(
    rng: np.random.Generator,
    n_items: int,
    seen: np.ndarray,
    count: int,
    *,
    distinct: bool,
) -> np.ndarray:
    """Draw ``count`` items uniformly from ``[0, n_items)`` minus ``seen``.

    Args:
        rng: the generator to draw from (its state advances).
        n_items: catalogue size, >= 1.
        seen: int64, *sorted* unique item indices to avoid.
        count: how many to draw, >= 0.
        distinct: draw without replacement (evaluation negatives) or with it
            (training negatives).

    Returns:
        int64 ``[count]`` items, in draw order.

    Raises:
        ValueError: fewer unseen items than ``count`` (``distinct``) or none at all.
    """
    n_unseen = n_items - int(seen.size)
    if count == 0:
        return np.empty(0, dtype=np.int64)
    if n_unseen <= 0 or (distinct and count > n_unseen):
        raise ValueError(
            f"cannot draw {count} {'distinct ' if distinct else ''}items from the "
            f"{max(n_unseen, 0)} of {n_items} items not seen"
        )
    if n_unseen < 4 * count or seen.size > n_items // 2:
        pool = np.setdiff1d(np.arange(n_items, dtype=np.int64), seen, assume_unique=True)
        return rng.choice(pool, size=count, replace=not distinct).astype(np.int64)
    chosen: list[np.ndarray] = []
    need = count
    taken = np.empty(0, dtype=np.int64)
    while need > 0:
        draw = rng.integers(0, n_items, size=need + need // 2 + 8, dtype=np.int64)
        pos = np.searchsorted(seen, draw)
        pos[pos == seen.size] = 0
        draw = draw[seen[pos] != draw] if seen.size else draw
        if distinct:
            _, first = np.unique(draw, return_index=True)
            draw = draw[np.sort(first)]
            draw = draw[~np.isin(draw, taken)]
        draw = draw[:need]
        chosen.append(draw)
        taken = np.concatenate([taken, draw])
        need -= draw.size
    return np.concatenate(chosen)


@dataclass(frozen=True, eq=False)
class TrainingExamples:
    """Labelled (user, item) pairs for binary cross-entropy.

    Attributes:
        users: int64 ``[n]`` dense user indices.
        items: int64 ``[n]`` dense item indices.
        labels: float32 ``[n]``, 1.0 for an observed interaction, 0.0 for a sampled
            negative.
    """

    users: np.ndarray
    items: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.users.size)

    @classmethod
    def concatenate(cls, parts: Iterable[TrainingExamples]) -> TrainingExamples:
        """Join several example sets in order."""
        parts = list(parts)
        if not parts:
            return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
        return cls(
            np.concatenate([p.users for p in parts]),
            np.concatenate([p.items for p in parts]),
            np.concatenate([p.labels for p in parts]),
        )

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(users LongTensor, items LongTensor, labels FloatTensor), sharing memory."""
        return (
            torch.from_numpy(self.users),
            torch.from_numpy(self.items),
            torch.from_numpy(self.labels),
        )

    def tensor_dataset(self) -> torch.utils.data.TensorDataset:
        """A ``TensorDataset`` of (user, item, label) rows, e.g. for an Opacus loader."""
        return torch.utils.data.TensorDataset(*self.tensors())


def user_training_examples(
    user: int,
    train_items: np.ndarray,
    n_items: int,
    *,
    negatives_per_positive: int = 4,
    seed: int = 0,
    epoch: int = 0,
) -> TrainingExamples:
    """One user's training examples: every training item plus sampled negatives.

    Needs nothing but the user's own training items and the catalogue size, so a
    client can build its local dataset alone. Deterministic in
    ``(user, train_items, n_items, negatives_per_positive, seed, epoch)``; a new
    ``epoch`` draws fresh negatives.

    Args:
        user: dense user index, >= 0 (the label written into ``users``; it also keys
            the generator).
        train_items: the user's training items (any order; duplicates are dropped).
        n_items: catalogue size, > every item index.
        negatives_per_positive: negatives per positive, >= 0 (NCF: 4).
        seed: >= 0.
        epoch: >= 0.

    Returns:
        Positives first (sorted by item), then ``negatives_per_positive * n_pos``
        negatives in draw order.

    Raises:
        TypeError: non-integer arguments.
        ValueError: negative arguments, items outside ``[0, n_items)``, or a user who
            has interacted with every item while negatives are requested.
    """
    user = _check_nonneg_int("user", user)
    n_items = _check_nonneg_int("n_items", n_items)
    ratio = _check_nonneg_int("negatives_per_positive", negatives_per_positive)
    seed = _check_nonneg_int("seed", seed)
    epoch = _check_nonneg_int("epoch", epoch)
    positives = np.unique(np.asarray(train_items, dtype=np.int64))
    if positives.size and (positives[0] < 0 or positives[-1] >= n_items):
        raise ValueError(f"train_items must lie in [0, {n_items})")
    rng = np.random.default_rng([seed, epoch, user, _TRAIN_STREAM])
    negatives = sample_unseen(rng, n_items, positives, ratio * positives.size, distinct=False)
    n_pos, n_neg = positives.size, negatives.size
    return TrainingExamples(
        users=np.full(n_pos + n_neg, user, dtype=np.int64),
        items=np.concatenate([positives, negatives]),
        labels=np.concatenate([np.ones(n_pos, np.float32), np.zeros(n_neg, np.float32)]),
    )


def training_examples(
    split: LeaveOneOutSplit,
    *,
    users: Iterable[int] | None = None,
    negatives_per_positive: int = 4,
    seed: int = 0,
    epoch: int = 0,
) -> TrainingExamples:
    """Training examples of several users (default: all), concatenated in user order.

    Equal, user by user, to :func:`user_training_examples` on each user's training
    items, so centralized and federated training see the same data.

    Raises:
        TypeError, ValueError: as :func:`user_training_examples`; ValueError also for a
            user index outside ``[0, split.n_users)``.
    """
    _check_nonneg_int("negatives_per_positive", negatives_per_positive)
    _check_nonneg_int("seed", seed)
    _check_nonneg_int("epoch", epoch)
    chosen = list(range(split.n_users)) if users is None else [int(u) for u in users]
    bad = [u for u in chosen if not 0 <= u < split.n_users]
    if bad:
        raise ValueError(f"user {bad[0]} is outside [0, {split.n_users})")
    parts = []
    for user in chosen:
        parts.append(
            user_training_examples(
                user,
                split.user_train_items(user),
                split.n_items,
                negatives_per_positive=negatives_per_positive,
                seed=seed,
                epoch=epoch,
            )
        )
    return TrainingExamples.concatenate(parts)
