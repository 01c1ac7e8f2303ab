"""Ranking metrics for one held-out item per user (torch, batched).

The rank of the held-out (target) item is 0-based among the candidates:

* candidates scoring strictly higher push it down one place each;
* candidates scoring *exactly equal* are tie-broken at random: the target lands
  uniformly in its tie group, ``rank = higher + floor(u * (ties + 1))`` with ``u`` a
  per-user uniform in ``[0, 1)`` fixed by seed (:func:`tie_break_uniforms`);
* a NaN target score is a miss: its rank is ``+inf``;
* a NaN candidate score ranks below everything (it neither beats nor ties the target).

Worked example: target score 0.5, candidates ``[0.9, 0.5, 0.5, 0.1, nan]``: one higher,
two tied, so the rank is ``1 + floor(u * 3)``, i.e. 1, 2 or 3 with equal chance; with
``u = 0.5`` it is 2, ``HR@3 = 1`` and ``NDCG@3 = 1 / log2(2 + 2) = 0.5``.

For leave-one-out there is one relevant item, so on the full ranking Recall@K equals
HR@K and Precision@K equals HR@K / K.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "hit_rate_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "rank_of_target",
    "recall_at_k",
    "tie_break_uniforms",
]


def tie_break_uniforms(n_users: int, seed: int) -> torch.Tensor:
    """float64 ``[n_users]`` uniforms in ``[0, 1)``, one per user, fixed by ``seed``.

    Indexed by user, so a user's tie-break does not depend on batch composition.

    Raises:
        ValueError: ``n_users < 0`` or ``seed < 0``.
    """
    if n_users < 0 or seed < 0:
        raise ValueError(f"n_users and seed must be >= 0, got {n_users}, {seed}")
    gen = torch.Generator().manual_seed(int(seed))
    return torch.rand(n_users, generator=gen, dtype=torch.float64)


def rank_of_target(
    target_scores: torch.Tensor,
    candidate_scores: torch.Tensor,
    tie_uniforms: torch.Tensor,
    *,
    excluded: torch.Tensor | None = None,
) -> torch.Tensor:
    """0-based rank of each row's target among its candidates (see module docstring).

    Args:
        target_scores: ``[B]`` float scores of the targets.
        candidate_scores: ``[B, C]`` float scores of the candidates (the target must
            not be among them, or must be ``excluded``).
        tie_uniforms: ``[B]`` uniforms in ``[0, 1)``.
        excluded: optional bool ``[B, C]``; True candidates are ignored.

    Returns:
        float64 ``[B]`` ranks in ``[0, C]``, ``+inf`` where the target score is NaN.

    Raises:
        ValueError: mismatched shapes.
    """
    if candidate_scores.ndim != 2 or target_scores.shape != candidate_scores.shape[:1]:
        raise ValueError(
            f"expected target [B] and candidates [B, C], got {tuple(target_scores.shape)} "
            f"and {tuple(candidate_scores.shape)}"
        )
    if tie_uniforms.shape != target_scores.shape:
        raise ValueError("tie_uniforms must have one entry per target")
    if excluded is not None and excluded.shape != candidate_scores.shape:
        raise ValueError("excluded must have the shape of candidate_scores")
    target = target_scores.unsqueeze(1)
    higher = candidate_scores > target
    tied = candidate_scores == target
    if excluded is not None:
        higher &= ~excluded
        tied &= ~excluded
    n_higher = higher.sum(dim=1).to(torch.float64)
    n_tied = tied.sum(dim=1).to(torch.float64)
    rank = n_higher + torch.floor(tie_uniforms.to(torch.float64) * (n_tied + 1.0))
    return torch.where(torch.isnan(target_scores), torch.full_like(rank, math.inf), rank)


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")


def hit_rate_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user hit (1.0 if ``rank < k`` else 0.0), float64."""
    _check_k(k)
    return (ranks < k).to(torch.float64)


def ndcg_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user NDCG@k with one relevant item: ``1 / log2(rank + 2)`` if ``rank < k``."""
    _check_k(k)
    gain = 1.0 / torch.log2(ranks.to(torch.float64) + 2.0)
    return torch.where(ranks < k, gain, torch.zeros_like(gain))


def recall_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user Recall@k with one relevant item (equals the hit)."""
    return hit_rate_at_k(ranks, k)


def precision_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user Precision@k with one relevant item: hit / k."""
    return hit_rate_at_k(ranks, k) / k
