"""Centralized training: learns, chooses on validation only, is deterministic."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from secagg_rec.rec.baselines import popularity_scorer
from secagg_rec.rec.centralized import TrainConfig, train_centralized
from secagg_rec.rec.evaluate import evaluate_sampled
from secagg_rec.rec.models import build_model
from secagg_rec.rec.splits import leave_one_out_split
from secagg_rec.rec.synthetic import make_synthetic

FAST = dict(epochs=6, batch_size=512, lr=5e-3, patience=None)


@pytest.fixture(scope="module")
def split():
    return leave_one_out_split(make_synthetic(n_users=150, n_items=250, seed=1), seed=0)


@pytest.mark.parametrize("name", ["mf", "neumf"])
def test_learned_models_beat_popularity_on_synthetic_data(split, name):
    model = build_model(name, split.n_users, split.n_items, seed=0)
    result = train_centralized(model, split, TrainConfig(**FAST))
    popularity = evaluate_sampled(popularity_scorer(split), split)["HR@10"]
    assert result.test["HR@10"] > popularity + 0.1
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_best_epoch_is_the_best_validation_epoch_and_its_weights_are_kept(split):
    model = build_model("mf", split.n_users, split.n_items, seed=0)
    result = train_centralized(model, split, TrainConfig(**FAST))
    keys = [(h["HR@10"], h["NDCG@10"]) for h in result.history]
    assert result.best_epoch == 1 + max(range(len(keys)), key=lambda i: (keys[i], -i))
    assert evaluate_sampled(model, split, which="val") == result.val
    assert evaluate_sampled(model, split, which="test") == result.test


def test_test_items_never_influence_training(split):
    """Scrambling the test items and negatives changes nothing before the final test."""
    rng = np.random.default_rng(0)
    scrambled = dataclasses.replace(
        split,
        test_items=rng.permutation(split.test_items),
        test_negatives=rng.permutation(split.test_negatives),
    )
    a = train_centralized(build_model("gmf", 150, 250, seed=0), split, TrainConfig(**FAST))
    b = train_centralized(build_model("gmf", 150, 250, seed=0), scrambled, TrainConfig(**FAST))
    assert [h["HR@10"] for h in a.history] == [h["HR@10"] for h in b.history]
    assert a.best_epoch == b.best_epoch
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])


def test_training_is_deterministic_by_seed(split):
    cfg = TrainConfig(epochs=2, batch_size=512, lr=5e-3, seed=3)
    a = train_centralized(build_model("neumf", 150, 250, seed=3), split, cfg)
    b = train_centralized(build_model("neumf", 150, 250, seed=3), split, cfg)
    c = train_centralized(
        build_model("neumf", 150, 250, seed=3), split, dataclasses.replace(cfg, seed=4)
    )
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert [h["loss"] for h in a.history] != [h["loss"] for h in c.history]


def test_patience_stops_training(split):
    # a learning rate this large makes validation stall quickly
    cfg = TrainConfig(epochs=25, batch_size=1024, lr=0.5, patience=2)
    result = train_centralized(build_model("mf", 150, 250), split, cfg, evaluate_test=False)
    assert result.test is None
    assert len(result.history) == min(cfg.epochs, result.best_epoch + cfg.patience)
    assert len(result.history) < cfg.epochs
    assert result.to_dict()["best_epoch"] == result.best_epoch


def test_bad_arguments(split):
    with pytest.raises(ValueError, match="sized for"):
        train_centralized(build_model("mf", 10, 250), split)
    with pytest.raises(TypeError):
        train_centralized("mf", split)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        train_centralized(build_model("mf", 150, 250), split, {"epochs": 1})  # type: ignore[arg-type]
    for bad in (
        dict(epochs=0),
        dict(lr=0.0),
        dict(patience=0),
        dict(weight_decay=-1.0),
        dict(batch_size=1.5),
        dict(seed=-1),
    ):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
