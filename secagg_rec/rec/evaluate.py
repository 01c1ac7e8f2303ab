"""Evaluate any scorer by the NCF leave-one-out protocol.

A *scorer* is any callable ``score(users, items) -> scores`` taking two int64 tensors
of equal length ``n`` and returning ``n`` float scores (higher = more likely); a model
of :mod:`secagg_rec.rec.models` is one. It is called under ``torch.no_grad()`` on
batches of users.

Two protocols, both on validation (``which="val"``) or test (``which="test"``):

* :func:`evaluate_sampled`: the held-out item against its user's 99 fixed sampled
  negatives; HR@K and NDCG@K (the NCF numbers).
* :func:`evaluate_full`: the held-out item against every item the user has not
  interacted with (training items excluded, and the validation item when testing);
  Recall@K, Precision@K, NDCG@K.

Ties are broken at random with a per-user uniform fixed by ``seed``; a NaN score of
the held-out item counts as a miss (see :mod:`secagg_rec.rec.metrics`). Metrics are
means over the evaluated users (those with held-out items, or the ``users`` given).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from secagg_rec.rec.metrics import (
    hit_rate_at_k,
    ndcg_at_k,
    precision_at_k,
    rank_of_target,
    recall_at_k,
    tie_break_uniforms,
)
from secagg_rec.rec.splits import HELD_OUT, LeaveOneOutSplit

__all__ = [
    "ScoreFn",
    "evaluate_full",
    "evaluate_sampled",
    "full_ranks",
    "sampled_ranks",
]

#: ``score(users, items) -> scores``: int64 ``[n]``, int64 ``[n]`` -> float ``[n]``.
ScoreFn = Callable[[torch.Tensor, torch.Tensor], Any]


def _ks(k: int | Sequence[int]) -> tuple[int, ...]:
    ks = (k,) if isinstance(k, int) and not isinstance(k, bool) else tuple(k)
    if not ks or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in ks):
        raise ValueError(f"k must be an int >= 1 or a non-empty sequence of them, got {k!r}")
    return ks


def _check_common(score_fn: Any, split: Any, which: str, seed: int, batch_users: int) -> None:
    if not callable(score_fn):
        raise TypeError(f"score_fn must be callable, got {type(score_fn).__name__}")
    if not isinstance(split, LeaveOneOutSplit):
        raise TypeError(f"split must be a LeaveOneOutSplit, got {type(split).__name__}")
    if which not in HELD_OUT:
        raise ValueError(f"which must be one of {HELD_OUT}, got {which!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if isinstance(batch_users, bool) or not isinstance(batch_users, int) or batch_users < 1:
        raise ValueError(f"batch_users must be an int >= 1, got {batch_users!r}")


def _eval_users(split: LeaveOneOutSplit, which: str, users: Iterable[int] | None) -> np.ndarray:
    items, _ = split.held_out(which)
    if users is None:
        return np.flatnonzero(items >= 0)
    chosen = np.asarray(list(users), dtype=np.int64)
    if chosen.size and (chosen.min() < 0 or chosen.max() >= split.n_users):
        raise ValueError(f"users must lie in [0, {split.n_users})")
    if chosen.size and np.any(items[chosen] < 0):
        bad = int(chosen[np.argmax(items[chosen] < 0)])
        raise ValueError(f"user {bad} has no {which} item (fewer than 3 interactions)")
    return chosen


def _call(score_fn: ScoreFn, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    out = score_fn(users, items)
    scores = torch.as_tensor(out).detach().cpu()
    if scores.shape != users.shape:
        raise ValueError(
            f"score_fn returned shape {tuple(scores.shape)} for {users.numel()} pairs; "
            f"expected ({users.numel()},)"
        )
    if not torch.is_floating_point(scores):
        scores = scores.to(torch.float64)
    return scores


def sampled_ranks(
    score_fn: ScoreFn,
    split: LeaveOneOutSplit,
    *,
    which: str = "test",
    seed: int = 0,
    users: Iterable[int] | None = None,
    batch_users: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """(users, ranks): each user's held-out item's 0-based rank among its negatives.

    Ranks are float64 in ``[0, n_negatives]``, ``inf`` for a NaN score. Useful to
    compute metrics per client. Arguments and errors as :func:`evaluate_sampled`.
    """
    _check_common(score_fn, split, which, seed, batch_users)
    chosen = _eval_users(split, which, users)
    targets, negatives = split.held_out(which)
    uniforms = tie_break_uniforms(split.n_users, seed)
    n_cand = negatives.shape[1] + 1
    ranks = np.empty(chosen.size, dtype=np.float64)
    with torch.no_grad():
        for start in range(0, chosen.size, batch_users):
            batch = chosen[start : start + batch_users]
            items = np.concatenate([targets[batch, None], negatives[batch]], axis=1)
            u = torch.from_numpy(np.repeat(batch, n_cand))
            scores = _call(score_fn, u, torch.from_numpy(items.reshape(-1)))
            scores = scores.reshape(batch.size, n_cand)
            r = rank_of_target(scores[:, 0], scores[:, 1:], uniforms[torch.from_numpy(batch)])
            ranks[start : start + batch.size] = r.numpy()
    return chosen, ranks


def evaluate_sampled(
    score_fn: ScoreFn,
    split: LeaveOneOutSplit,
    *,
    which: str = "test",
    k: int | Sequence[int] = 10,
    seed: int = 0,
    users: Iterable[int] | None = None,
    batch_users: int = 1024,
) -> dict[str, float]:
    """HR@K and NDCG@K of the held-out item against its 99 sampled negatives.

    Args:
        score_fn: the scorer (see module docstring).
        split: the leave-one-out split holding held-out items and negatives.
        which: ``"val"`` (for choosing hyperparameters and epochs) or ``"test"``.
        k: cut-off(s), each >= 1.
        seed: >= 0, fixes the random tie-break.
        users: evaluate only these users (default: all with held-out items).
        batch_users: users scored per call of ``score_fn``.

    Returns:
        ``{"HR@10": ..., "NDCG@10": ..., "users": n}``, one pair per ``k``; metrics in
        ``[0, 1]``, ``nan`` when no user is evaluated.

    Raises:
        TypeError: a non-callable scorer or a split of the wrong type.
        ValueError: bad ``which``/``k``/``seed``/``batch_users``/``users``, or a
            scorer returning the wrong shape.
    """
    ks = _ks(k)
    chosen, ranks = sampled_ranks(
        score_fn, split, which=which, seed=seed, users=users, batch_users=batch_users
    )
    r = torch.from_numpy(ranks)
    out: dict[str, float] = {}
    for kk in ks:
        out[f"HR@{kk}"] = _mean(hit_rate_at_k(r, kk))
        out[f"NDCG@{kk}"] = _mean(ndcg_at_k(r, kk))
    out["users"] = int(chosen.size)
    return out


def full_ranks(
    score_fn: ScoreFn,
    split: LeaveOneOutSplit,
    *,
    which: str = "test",
    seed: int = 0,
    users: Iterable[int] | None = None,
    batch_users: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """(users, ranks) of the held-out item among all items the user has not seen.

    Ranks are 0-based float64, ``inf`` for a NaN score. Arguments and errors as
    :func:`evaluate_full`.
    """
    _check_common(score_fn, split, which, seed, batch_users)
    chosen = _eval_users(split, which, users)
    targets, _ = split.held_out(which)
    uniforms = tie_break_uniforms(split.n_users, seed)
    n_items = split.n_items
    all_items = torch.arange(n_items, dtype=torch.int64)
    counts = np.diff(split.train_indptr)
    ranks = np.empty(chosen.size, dtype=np.float64)
    with torch.no_grad():
        for start in range(0, chosen.size, batch_users):
            batch = chosen[start : start + batch_users]
            b = batch.size
            u = torch.from_numpy(np.repeat(batch, n_items))
            scores = _call(score_fn, u, all_items.repeat(b)).reshape(b, n_items)
            excluded = torch.zeros(b, n_items, dtype=torch.bool)
            rows = np.repeat(np.arange(b), counts[batch])
            cols = np.concatenate([split.user_train_items(int(x)) for x in batch])
            excluded[torch.from_numpy(rows), torch.from_numpy(cols)] = True
            if which == "test":
                has_val = split.val_items[batch] >= 0
                excluded[
                    torch.from_numpy(np.flatnonzero(has_val)),
                    torch.from_numpy(split.val_items[batch][has_val]),
                ] = True
            tgt = torch.from_numpy(targets[batch])
            row_idx = torch.arange(b)
            target_scores = scores[row_idx, tgt]
            excluded[row_idx, tgt] = True
            r = rank_of_target(
                target_scores, scores, uniforms[torch.from_numpy(batch)], excluded=excluded
            )
            ranks[start : start + b] = r.numpy()
    return chosen, ranks


def evaluate_full(
    score_fn: ScoreFn,
    split: LeaveOneOutSplit,
    *,
    which: str = "test",
    k: int | Sequence[int] = 10,
    seed: int = 0,
    users: Iterable[int] | None = None,
    batch_users: int = 256,
) -> dict[str, float]:
    """Recall@K, Precision@K and NDCG@K ranking the held-out item among all unseen items.

    Candidates are every item except the user's training items (and, for
    ``which="test"``, the validation item). Arguments, return shape and errors as
    :func:`evaluate_sampled`, with keys ``"Recall@K"``, ``"Precision@K"``,
    ``"NDCG@K"`` and ``"users"``.
    """
    ks = _ks(k)
    chosen, ranks = full_ranks(
        score_fn, split, which=which, seed=seed, users=users, batch_users=batch_users
    )
    r = torch.from_numpy(ranks)
    out: dict[str, float] = {}
    for kk in ks:
        out[f"Recall@{kk}"] = _mean(recall_at_k(r, kk))
        out[f"Precision@{kk}"] = _mean(precision_at_k(r, kk))
        out[f"NDCG@{kk}"] = _mean(ndcg_at_k(r, kk))
    out["users"] = int(chosen.size)
    return out


def _mean(values: torch.Tensor) -> float:
    return float(values.mean()) if values.numel() else float("nan")
