"""Federated training: secure aggregation changes nothing but quantization; nothing
private leaves a client; runs are deterministic and resume exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from secagg_rec.fl.config import FederatedConfig
from secagg_rec.fl.trainer import prepare, train_federated
from secagg_rec.fl.vector import shared_dim, shared_vector
from secagg_rec.rec.synthetic import make_synthetic

SMALL = {"n_users": 60, "n_items": 160, "mean_interactions": 20, "seed": 2}


def _config(**kw) -> FederatedConfig:
    base = {"dataset": "synthetic", "rounds": 4, "clients_per_round": 20,
            "local_epochs": 1, "local_batch_size": 16, "seed": 4,
            "factors": 8}
    base.update(kw)
    base.setdefault("eval_every", 2)
    return FederatedConfig(**base)


def _run(config: FederatedConfig, **kw):
    setup = prepare(config, dataset=make_synthetic(**SMALL))
    return train_federated(config, setup=setup, **kw)


def test_secagg_on_and_off_give_the_same_model_up_to_quantization():
    on = _run(_config(secagg=True, dropout=0.1))
    off = _run(_config(secagg=False, dropout=0.1))
    x_on, x_off = shared_vector(on.model), shared_vector(off.model)
    diff = float(np.max(np.abs(x_on - x_off)))
    # per round the mean's error is below the quantizer's bound (about 1e-7 here);
    # four rounds of server momentum (MF's server lr 3, SGD locally) keep it tiny.
    assert diff < 1e-4, diff
    assert abs(on.test["HR@10"] - off.test["HR@10"]) <= 0.005
    assert on.best_round == off.best_round
    rounds_with_secagg = [h for h in on.history if "secagg" in h]
    assert rounds_with_secagg and all(h["secagg"]["survivors"] >= 2 for h in rounds_with_secagg)
    # the same clients were included each round (dropouts are shared by both paths)
    assert [h.get("included") for h in on.history] == [h.get("included") for h in off.history]


@pytest.mark.parametrize("secagg", [False, True])
def test_no_user_embedding_leaves_a_client(secagg):
    config = _config(secagg=secagg, rounds=2, model="mf")
    sent: list[tuple[int, np.ndarray]] = []
    result = _run(config, on_upload=lambda c, v: sent.append((c, np.array(v))))
    model = result.model
    dim = shared_dim(model)
    users = model.user_embedding.weight.detach().numpy()
    assert sent
    for _client, vec in sent:
        assert vec.ndim == 1
        assert vec.shape[0] == (dim + 1 if secagg else dim)  # shared rows (+ the weight word)
        if not secagg:
            # the item embedding table leads the vector (the item bias, if any, follows)
            n_emb = model.item_embedding.weight.numel()
            rows = vec[:n_emb].reshape(model.n_items, -1)
            assert rows.shape[1] == users.shape[1]
            assert np.abs(rows).max() <= config.update_clip
            # no user's embedding row appears among the uploaded rows
            for u in range(users.shape[0]):
                assert not np.any(np.all(np.isclose(rows, users[u], atol=0), axis=1))
        else:
            assert vec.dtype.kind == "u" and int(vec.max()) < 2**config.bits
    # every selected client of every round uploaded exactly once per round
    assert len(sent) == sum(h["clients"] for h in result.history)


def test_same_seed_same_result_and_outputs(tmp_path):
    a = _run(_config(secagg=False, out=str(tmp_path / "a")))
    b = _run(_config(secagg=False))
    assert np.array_equal(shared_vector(a.model), shared_vector(b.model))
    out = json.loads((tmp_path / "a" / "result.json").read_text())
    for key in ("hr@10", "ndcg@10", "rounds", "clients", "epsilon", "secagg", "seconds"):
        assert key in out
    assert out["epsilon"] is None and out["secagg"] is False
    assert (tmp_path / "a" / "training.png").stat().st_size > 1000
    assert (tmp_path / "a" / "history.csv").read_text().startswith("aggregate_seconds")


def test_private_run_keeps_a_ledger_and_reports_epsilon(tmp_path):
    cfg = _config(secagg=True, dp=True, noise_multiplier=1.0, max_grad_norm=1.0,
                  rounds=2, clients_per_round=10, out=str(tmp_path), local_optimizer="sgd",
                  local_lr=0.5)
    res = _run(cfg)
    assert res.epsilon is not None and 0 < res.epsilon < 100
    from secagg_rec.privacy import PrivacyLedger

    ledger = PrivacyLedger(tmp_path / "ledger.sqlite")
    spent = [ledger.epsilon_spent(c) for c in ledger.clients()]
    assert max(spent) == pytest.approx(res.epsilon)
    assert sum(1 for e in spent if e > 0) <= 20  # at most 10 clients x 2 rounds trained


def test_budget_refuses_clients_once_spent(tmp_path):
    cfg = _config(secagg=False, dp=True, epsilon=0.5, noise_multiplier=0.8, rounds=4,
                  clients_per_round=30, out=str(tmp_path), local_optimizer="sgd", local_lr=0.5)
    res = _run(cfg)
    assert res.refused_clients > 0
    assert res.epsilon <= 0.5 + 1e-9


def _train_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "secagg_rec", "train", "--dataset", "synthetic",
            "--rounds", "8", "--clients-per-round", "60", "--local-epochs", "1",
            "--eval-every", "2", "--seed", "3", "--out", str(out), "--json"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_model(tmp_path):
    full = tmp_path / "full"
    subprocess.run(_train_cmd(full), check=True, capture_output=True, timeout=600)
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_train_cmd(cut), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            ckpt = cut / "checkpoint.pt"
            if ckpt.exists():
                try:
                    if torch.load(ckpt, weights_only=False)["round"] >= 3:
                        break
                except Exception:  # the file is being replaced; retry
                    pass
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (cut / "result.json").exists()  # it really was interrupted
    done = subprocess.run(_train_cmd(cut), check=True, capture_output=True, timeout=600)
    resumed = json.loads(done.stdout)
    assert resumed["resumed_from_round"] >= 3
    a = torch.load(full / "model.pt")
    b = torch.load(cut / "model.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed["hr@10"] == json.loads((full / "result.json").read_text())["hr@10"]


@pytest.mark.parametrize("weighting", ["uniform", "examples"])
def test_the_server_averages_with_the_configured_client_weights(weighting):
    config = _config(secagg=False, rounds=1, weighting=weighting, server_optimizer="fedavg",
                     server_lr=1.0, server_lr_schedule="constant", update_clip=1e6,
                     eval_every=1)
    data = make_synthetic(**{**SMALL, "min_interactions": 5})  # users of different sizes
    setup = prepare(config, dataset=data)
    x0 = shared_vector(setup.model).astype(np.float64)
    sent: dict[int, np.ndarray] = {}
    result = train_federated(config, setup=setup,
                             on_upload=lambda c, v: sent.__setitem__(c, np.array(v)))
    assert len(sent) == 20
    w = {c: 1.0 if weighting == "uniform" else float(setup.client_examples[c]) for c in sent}
    assert len({float(setup.client_examples[c]) for c in sent}) > 5  # sizes differ
    expected = x0 + sum(w[c] * sent[c] for c in sent) / sum(w.values())
    got = shared_vector(result.model).astype(np.float64)
    assert np.max(np.abs(got - expected)) < 1e-6
    # and the other weighting would have given a measurably different model
    other = {c: float(setup.client_examples[c]) if weighting == "uniform" else 1.0 for c in sent}
    alt = x0 + sum(other[c] * sent[c] for c in sent) / sum(other.values())
    assert np.max(np.abs(got - alt)) > 1e-4


def test_secure_aggregation_applies_example_count_weights_too():
    # users of different sizes, so the two weightings give different means; a wrong
    # public weight bound would cap every weight and silently make them uniform
    data = make_synthetic(**{**SMALL, "min_interactions": 5})

    def run(**kw):
        config = _config(rounds=2, server_lr=1.0, **kw)
        return shared_vector(train_federated(config, setup=prepare(config, dataset=data)).model)

    on = run(secagg=True, weighting="examples")
    off = run(secagg=False, weighting="examples")
    uniform = run(secagg=False, weighting="uniform")
    assert np.max(np.abs(on - off)) < 1e-4
    assert np.max(np.abs(off - uniform)) > 1e-3


def test_checkpoint_from_before_the_weighting_option_resumes(tmp_path):
    config = _config(secagg=False, rounds=2, weighting="examples", server_lr=1.0,
                     out=str(tmp_path / "run"))
    _run(config)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=False)
    del state["key"]["weighting"]  # what an older version wrote
    torch.save(state, ckpt)
    assert _run(config).resumed_from == 2  # non-private then meant example counts
    with pytest.raises(ValueError, match="different configuration"):
        _run(config.replace(weighting="uniform"))


def test_config_file_and_errors(tmp_path):
    from secagg_rec.cli import main

    cfg = tmp_path / "run.toml"
    cfg.write_text('[train]\nrounds = 2\nclients-per-round = 5\nbogus = 1\n')
    assert main(["train", "--config", str(cfg), "--json"]) == 2
    with pytest.raises(ValueError, match="--dp needs"):
        FederatedConfig(dp=True)
    with pytest.raises(ValueError, match="--dp needs --weighting uniform"):
        FederatedConfig(dp=True, epsilon=1.0, weighting="examples")
    with pytest.raises(ValueError, match="weighting must be one of"):
        FederatedConfig(weighting="counts")
    with pytest.raises(ValueError, match="partition"):
        FederatedConfig(partition="silo:1")


def test_a_diverging_learning_rate_stops_with_a_named_error(tmp_path):
    from secagg_rec.errors import TrainingDivergedError

    config = _config(model="neumf", local_lr=1e30, rounds=2, out=str(tmp_path / "run"))
    with pytest.raises(TrainingDivergedError, match="lower the local learning rate") as info:
        _run(config)
    assert info.value.round >= 1 and isinstance(info.value.client, int)
