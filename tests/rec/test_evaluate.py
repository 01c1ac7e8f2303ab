"""Ranking metrics and the evaluation protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from secagg_rec.rec.baselines import popularity_scorer, random_scorer
from secagg_rec.rec.evaluate import evaluate_full, evaluate_sampled, full_ranks, sampled_ranks
from secagg_rec.rec.metrics import hit_rate_at_k, ndcg_at_k, rank_of_target, tie_break_uniforms
from secagg_rec.rec.splits import leave_one_out_split
from secagg_rec.rec.synthetic import make_synthetic


@pytest.fixture(scope="module")
def split():
    return leave_one_out_split(make_synthetic(n_users=400, n_items=500, seed=11), seed=3)


def _oracle(split, which, target_score=1.0, other=0.0):
    targets, _ = split.held_out(which)
    t = torch.from_numpy(targets)

    def score(users, items):
        return torch.where(items == t[users], target_score, other).to(torch.float32)

    return score


def test_worked_example_from_the_docstring():
    cand = torch.tensor([[0.9, 0.5, 0.5, 0.1, math.nan]])
    rank = rank_of_target(torch.tensor([0.5]), cand, torch.tensor([0.5], dtype=torch.float64))
    assert rank.item() == 2.0
    assert hit_rate_at_k(rank, 3).item() == 1.0 and hit_rate_at_k(rank, 2).item() == 0.0
    assert ndcg_at_k(rank, 3).item() == pytest.approx(0.5)
    for u, expected in ((0.0, 1.0), (0.34, 2.0), (0.99, 3.0)):
        r = rank_of_target(torch.tensor([0.5]), cand, torch.tensor([u], dtype=torch.float64))
        assert r.item() == expected


def test_nan_target_is_a_miss():
    r = rank_of_target(
        torch.tensor([math.nan]), torch.zeros(1, 3), torch.zeros(1, dtype=torch.float64)
    )
    assert math.isinf(r.item())
    assert hit_rate_at_k(r, 100).item() == 0.0 and ndcg_at_k(r, 100).item() == 0.0


def test_oracle_scores_perfectly_and_anti_oracle_never_hits(split):
    for which in ("val", "test"):
        good = evaluate_sampled(_oracle(split, which), split, which=which, k=(1, 10))
        assert good["HR@1"] == 1.0 and good["NDCG@10"] == 1.0 and good["users"] == 400
        bad = evaluate_sampled(_oracle(split, which, 0.0, 1.0), split, which=which, k=99)
        assert bad["HR@99"] == 0.0
        full = evaluate_full(_oracle(split, which), split, which=which, k=1)
        assert full["Recall@1"] == 1.0 and full["Precision@1"] == 1.0


def test_constant_scores_are_tie_broken_uniformly(split):
    def const(users, items):
        return torch.zeros(users.shape)

    _users, ranks = sampled_ranks(const, split, seed=5)
    # the tie-break puts the target uniformly among the 100 candidates
    assert set(np.unique(ranks).tolist()) <= set(range(100))
    assert 0.05 < np.mean(ranks < 10) < 0.15
    assert np.array_equal(ranks, sampled_ranks(const, split, seed=5)[1])
    assert not np.array_equal(ranks, sampled_ranks(const, split, seed=6)[1])


def test_nan_model_scores_nothing(split):
    def nan(users, items):
        return torch.full(users.shape, math.nan)

    assert evaluate_sampled(nan, split, k=100)["HR@100"] == 0.0
    assert evaluate_full(nan, split, k=500)["Recall@500"] == 0.0


def test_results_do_not_depend_on_batch_size(split):
    score = random_scorer(1)
    a = evaluate_sampled(score, split, batch_users=7, seed=2)
    b = evaluate_sampled(score, split, batch_users=1000, seed=2)
    assert a == b
    c = evaluate_full(popularity_scorer(split), split, batch_users=13, k=(5, 20))
    d = evaluate_full(popularity_scorer(split), split, batch_users=400, k=(5, 20))
    assert c == d


def test_full_ranking_excludes_known_items(split):
    """Training items (and the validation item, for test) score highest but don't count."""
    targets, _ = split.held_out("test")
    known = [set(split.known_items(u, "test").tolist()) for u in range(split.n_users)]
    t = torch.from_numpy(targets)

    def score(users, items):
        is_known = torch.tensor(
            [i in known[u] for u, i in zip(users.tolist(), items.tolist(), strict=True)]
        )
        return torch.where(is_known, 10.0, torch.where(items == t[users], 5.0, 0.0))

    _users, ranks = full_ranks(score, split, which="test", users=range(50))
    assert (ranks == 0).all()


def test_full_rank_counts_only_unseen_candidates(split):
    # target scores lowest: its rank is the number of unseen candidates minus one... exactly
    users, ranks = full_ranks(_oracle(split, "val", -1.0, 0.0), split, which="val")
    n_known = np.diff(split.train_indptr)[users]
    # candidates: all items minus training items minus the target itself, all higher
    assert np.array_equal(ranks, split.n_items - n_known - 1)


def test_subset_of_users_and_errors(split):
    res = evaluate_sampled(random_scorer(0), split, users=[1, 2, 3])
    assert res["users"] == 3
    with pytest.raises(ValueError, match="users must lie"):
        evaluate_sampled(random_scorer(0), split, users=[400])
    with pytest.raises(ValueError, match="which"):
        evaluate_sampled(random_scorer(0), split, which="train")
    with pytest.raises(ValueError, match="k must be"):
        evaluate_sampled(random_scorer(0), split, k=0)
    with pytest.raises(TypeError):
        evaluate_sampled("model", split)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        evaluate_sampled(lambda u, i: torch.zeros(3), split)


def test_random_scorer_is_a_pure_uniform_function():
    score = random_scorer(4)
    users = torch.arange(2000) % 37
    items = torch.arange(2000) // 37
    s = score(users, items)
    assert torch.equal(s, score(users, items))
    assert torch.equal(s[100:200], score(users[100:200], items[100:200]))
    assert ((s >= 0) & (s < 1)).all() and 0.45 < float(s.mean()) < 0.55
    assert not torch.equal(s, random_scorer(5)(users, items))
    with pytest.raises(ValueError):
        random_scorer(-1)


def test_random_scorer_hit_rate_is_about_k_over_candidates(split):
    hr = evaluate_sampled(random_scorer(0), split)["HR@10"]
    assert 0.05 < hr < 0.15


def test_popularity_scorer_returns_training_counts(split):
    counts = split.train_item_counts()
    s = popularity_scorer(split)(torch.tensor([0, 1]), torch.tensor([5, 7]))
    assert s.tolist() == [counts[5], counts[7]]


def test_tie_break_uniforms_are_fixed_per_user():
    a, b = tie_break_uniforms(10, 1), tie_break_uniforms(20, 1)
    assert torch.equal(a, b[:10])
    with pytest.raises(ValueError):
        tie_break_uniforms(3, -1)
