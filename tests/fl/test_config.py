"""FederatedConfig: per-model local and server optimizer defaults, weighting, explicit choices."""

from __future__ import annotations

import pytest

from secagg_rec.fl.config import FederatedConfig


@pytest.mark.parametrize(
    ("model", "optimizer", "lr"),
    [("mf", "sgd", 5.0), ("gmf", "sgd", 5.0), ("logreg", "sgd", 5.0), ("neumf", "adam", 0.01)],
)
def test_each_model_gets_its_local_optimizer_default(model, optimizer, lr):
    config = FederatedConfig(model=model)
    assert (config.local_optimizer, config.local_lr) == (optimizer, lr)


def test_explicit_choices_win_and_a_lone_optimizer_gets_its_own_lr():
    assert FederatedConfig(model="neumf", local_optimizer="sgd").local_lr == 1.0
    assert FederatedConfig(model="mf", local_optimizer="adam").local_lr == 0.01
    c = FederatedConfig(model="neumf", local_lr=0.003)
    assert (c.local_optimizer, c.local_lr) == ("adam", 0.003)
    with pytest.raises(ValueError, match="local-optimizer"):
        FederatedConfig(local_optimizer="rmsprop")
    with pytest.raises(ValueError, match="local-lr"):
        FederatedConfig(local_lr=0.0)


@pytest.mark.parametrize(
    ("options", "server_lr"),
    [({}, 3.0), ({"model": "neumf"}, 1.0), ({"model": "gmf"}, 1.0),
     ({"dp": True, "epsilon": 1.0}, 1.0), ({"server_optimizer": "fedadam"}, 0.05),
     ({"server_optimizer": "fedavg"}, 3.0), ({"server_lr": 0.5, "dp": True, "epsilon": 1.0}, 0.5)],
)
def test_server_lr_default_depends_on_model_optimizer_and_dp(options, server_lr):
    assert FederatedConfig(**options).server_lr == server_lr


def test_uniform_weighting_is_the_default_and_examples_is_refused_under_dp():
    assert FederatedConfig().weighting == "uniform"
    assert FederatedConfig(weighting="examples").weighting == "examples"
    with pytest.raises(ValueError, match="--weighting uniform"):
        FederatedConfig(dp=True, epsilon=1.0, weighting="examples")


def test_replace_works_out_defaulted_options_again_and_keeps_explicit_ones():
    mf = FederatedConfig()
    assert mf.replace(dp=True, epsilon=1.0).server_lr == 1.0
    assert mf.replace(server_optimizer="fedadam").server_lr == 0.05
    neumf = mf.replace(model="neumf")
    assert (neumf.local_optimizer, neumf.local_lr, neumf.server_lr) == ("adam", 0.01, 1.0)
    assert neumf.replace(model="mf") == mf
    explicit = FederatedConfig(server_lr=2.0, local_lr=0.5)
    changed = explicit.replace(dp=True, epsilon=1.0, model="neumf")
    assert (changed.server_lr, changed.local_lr, changed.local_optimizer) == (2.0, 0.5, "adam")
