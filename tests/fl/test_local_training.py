"""The vectorized local trainers equal client-by-client training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from secagg_rec.fl.batched import BatchedLocalTrainer, ClientData
from secagg_rec.fl.local import LocalConfig, UserStore, local_update
from secagg_rec.fl.vector import load_shared_vector, shared_dim, shared_vector
from secagg_rec.rec.models import build_model
from secagg_rec.rec.sampling import user_training_examples
from secagg_rec.rec.splits import leave_one_out_split
from secagg_rec.rec.synthetic import make_synthetic


@pytest.fixture(scope="module")
def split():
    ds = make_synthetic(n_users=60, n_items=300, mean_interactions=30, seed=3)
    return leave_one_out_split(ds, seed=3)


def _clients(split, users, epoch=1):
    return [
        ClientData(u, np.array([u]), user_training_examples(
            u, split.user_train_items(u), split.n_items, seed=5, epoch=epoch))
        for u in users
    ]


@pytest.mark.parametrize(
    ("model_name", "optimizer", "tol", "epochs", "user_epochs", "batch_size"),
    [("mf", "sgd", 1e-6, 2, 0, 16), ("logreg", "sgd", 1e-6, 2, 0, 16),
     ("gmf", "sgd", 1e-6, 2, 0, 16), ("neumf", "sgd", 1e-5, 2, 0, 16),
     ("mf", "adam", 2e-3, 2, 0, 16),
     # user-only epochs first (the federated default), and a pure refit of user rows
     ("mf", "sgd", 1e-6, 1, 2, 16), ("mf", "adam", 2e-3, 1, 2, 16), ("mf", "sgd", 1e-6, 0, 3, 16),
     ("gmf", "sgd", 1e-6, 1, 2, 16), ("logreg", "sgd", 1e-6, 1, 2, 16),
     # one batch per epoch: every client's data is smaller than the batch
     ("mf", "sgd", 1e-6, 1, 2, 10_000)],
)
def test_vectorized_equals_sequential(split, model_name, optimizer, tol, epochs, user_epochs,
                                      batch_size):
    torch.manual_seed(0)
    model = build_model(model_name, split.n_users, split.n_items, seed=1)
    cfg = LocalConfig(epochs=epochs, user_epochs=user_epochs, batch_size=batch_size,
                      lr=0.1 if optimizer == "sgd" else 0.01, optimizer=optimizer)
    x = shared_vector(model)
    clients = _clients(split, range(0, 60, 6))
    s_seq, s_bat, initial = UserStore(model), UserStore(model), UserStore(model)
    seq = [local_update(model, x, s_seq, c.users, c.examples, cfg, client=c.client,
                        generator=torch.Generator().manual_seed(100 + c.client))
           for c in clients]
    bat = BatchedLocalTrainer(model, cfg, chunk=7).train(
        x, s_bat, clients, [torch.Generator().manual_seed(100 + c.client) for c in clients])
    scale = max(float(np.abs(a.delta).max()) for a in seq)
    if epochs:
        assert scale > 1e-5  # training moved something
    else:
        assert scale == 0.0  # a refit moves no shared parameter
        moved = max(float((s_seq.rows[n] - initial.rows[n]).abs().max())
                    for n in s_seq.names)
        assert moved > 1e-4  # but it moves the user rows
    for a, b in zip(seq, bat, strict=True):
        assert a.client == b.client and a.examples == b.examples
        assert np.max(np.abs(a.delta - b.delta)) <= tol * max(scale, 1.0)
        assert abs(a.loss - b.loss) < 1e-4
    for n in s_seq.names:
        assert torch.allclose(s_seq.rows[n], s_bat.rows[n], atol=tol * 10)


def test_update_vector_holds_only_shared_item_rows(split):
    model = build_model("mf", split.n_users, split.n_items, seed=1, factors=8)
    assert shared_dim(model) == split.n_items * 8  # no user row in the vector
    cfg = LocalConfig(epochs=1, batch_size=16, lr=0.5, optimizer="sgd")
    store = UserStore(model)
    x = shared_vector(model)
    [client] = _clients(split, [7])
    before = {n: t.clone() for n, t in store.rows.items()}
    upd = local_update(model, x, store, client.users, client.examples, cfg, client=7,
                       generator=torch.Generator().manual_seed(0))
    rows = upd.delta.reshape(split.n_items, 8)
    touched = np.flatnonzero(np.abs(rows).sum(1))
    assert set(touched) <= set(client.examples.items.tolist())
    # the client's own user row changed, but only in the store
    changed = [u for u in range(split.n_users)
               if not torch.equal(store.rows["user_embedding.weight"][u],
                                  before["user_embedding.weight"][u])]
    assert changed == [7]


def test_shared_vector_round_trip_and_validation():
    model = build_model("neumf", 10, 20, seed=0)
    v = shared_vector(model)
    load_shared_vector(model, v + 1)
    assert np.allclose(shared_vector(model), v + 1)
    with pytest.raises(ValueError):
        load_shared_vector(model, v[:-1])
    bad = v.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError):
        load_shared_vector(model, bad)


def test_stacked_trainer_with_multi_user_clients_and_an_empty_one(split):
    """Silo-like clients (several users each) match client-by-client training; a
    client without examples sends a zero update and keeps its user rows."""
    from secagg_rec.rec.sampling import TrainingExamples

    model = build_model("mf", split.n_users, split.n_items, seed=1, factors=8)
    cfg = LocalConfig(epochs=1, user_epochs=1, batch_size=8, lr=0.1)
    x = shared_vector(model)
    silos = [np.arange(0, 5), np.arange(5, 12), np.arange(12, 14)]
    clients = [
        ClientData(k, users, TrainingExamples.concatenate(
            [user_training_examples(int(u), split.user_train_items(int(u)), split.n_items,
                                    seed=5, epoch=1) for u in users]))
        for k, users in enumerate(silos)
    ]
    empty = np.zeros(0, dtype=np.int64)
    clients.append(ClientData(3, np.array([20]), TrainingExamples(
        empty, empty, np.zeros(0, dtype=np.float32))))
    s_seq, s_bat, initial = UserStore(model), UserStore(model), UserStore(model)
    seq = [local_update(model, x, s_seq, c.users, c.examples, cfg, client=c.client,
                        generator=torch.Generator().manual_seed(7 + c.client))
           for c in clients[:3]]
    bat = BatchedLocalTrainer(model, cfg).train(
        x, s_bat, clients, [torch.Generator().manual_seed(7 + c.client) for c in clients])
    for a, b in zip(seq, bat[:3], strict=True):
        assert np.max(np.abs(a.delta)) > 1e-4
        assert np.max(np.abs(a.delta - b.delta)) <= 1e-6
    assert bat[3].examples == 0 and not np.any(bat[3].delta)
    for n in s_bat.names:
        assert torch.equal(s_bat.rows[n][20], initial.rows[n][20])
        trained = torch.from_numpy(np.concatenate(silos))
        assert torch.allclose(s_seq.rows[n][trained], s_bat.rows[n][trained], atol=1e-5)
