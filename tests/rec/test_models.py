"""Models: shapes, private/shared split, determinism, Opacus ghost clipping."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from secagg_rec.rec.models import (
    GMF,
    MODEL_NAMES,
    LogisticRegression,
    MatrixFactorization,
    NeuMF,
    RecommenderModel,
    build_model,
)

N_USERS, N_ITEMS = 12, 30


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_gives_one_logit_per_pair(name):
    model = build_model(name, N_USERS, N_ITEMS)
    users = torch.tensor([0, 3, 11, 3])
    items = torch.tensor([29, 0, 5, 5])
    out = model(users, items)
    assert out.shape == (4,) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError):
        model(users, items[:2])
    with pytest.raises(TypeError):
        model(users.float(), items)
    with pytest.raises(IndexError):
        model(torch.tensor([N_USERS]), torch.tensor([0]))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_private_and_shared_parameters_partition_the_model(name):
    model = build_model(name, N_USERS, N_ITEMS)
    private, shared = model.private_parameter_names(), model.shared_parameter_names()
    names = [n for n, _ in model.named_parameters()]
    assert sorted(private + shared) == sorted(names) and not set(private) & set(shared)
    assert private and shared
    params = dict(model.named_parameters())
    for n in private:  # private = indexed by user, nothing else
        assert n.startswith("user_") and params[n].shape[0] == N_USERS
    for n in shared:
        assert not n.startswith("user_")
    assert [p.data_ptr() for p in model.shared_parameters()] == [
        params[n].data_ptr() for n in shared
    ]
    assert len(model.private_parameters()) == len(private)


def test_a_users_private_rows_affect_only_that_user():
    model = NeuMF(N_USERS, N_ITEMS, seed=1)
    items = torch.arange(N_ITEMS)
    before = {u: model(torch.full((N_ITEMS,), u), items).detach() for u in (2, 5)}
    state = model.user_state(2)
    model.load_user_state(2, {n: torch.randn_like(r) for n, r in state.items()})
    assert not torch.equal(model(torch.full((N_ITEMS,), 2), items), before[2])
    assert torch.equal(model(torch.full((N_ITEMS,), 5), items).detach(), before[5])
    model.load_user_state(2, state)
    assert torch.equal(model(torch.full((N_ITEMS,), 2), items).detach(), before[2])
    with pytest.raises(KeyError):
        model.load_user_state(2, {})
    with pytest.raises(IndexError):
        model.user_state(N_USERS)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_initial_weights_follow_seed_and_leave_global_rng_alone(name):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_model(name, N_USERS, N_ITEMS, seed=4)
    assert torch.equal(torch.rand(3), expected_next)
    b = build_model(name, N_USERS, N_ITEMS, seed=4)
    c = build_model(name, N_USERS, N_ITEMS, seed=5)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_architectures():
    neumf = NeuMF(N_USERS, N_ITEMS)
    assert neumf.user_embedding_gmf.embedding_dim == 32
    assert neumf.user_embedding_mlp.embedding_dim == 32
    widths = [(m.in_features, m.out_features) for m in neumf.mlp if isinstance(m, nn.Linear)]
    assert widths == [(64, 32), (32, 16)]
    assert neumf.output.in_features == 48
    mf = MatrixFactorization(N_USERS, N_ITEMS, factors=8)
    u, i = torch.tensor([1]), torch.tensor([2])
    manual = (mf.user_embedding.weight[1] * mf.item_embedding.weight[2]).sum()
    assert torch.allclose(mf(u, i), manual)
    lr = LogisticRegression(N_USERS, N_ITEMS)
    assert torch.allclose(lr(u, i), lr.user_weight.weight[1] + lr.item_weight.weight[2])
    assert isinstance(GMF(N_USERS, N_ITEMS), RecommenderModel)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(factors=0), ValueError),
        (dict(factors=2.0), TypeError),
        (dict(mlp_layers=(63, 16)), ValueError),
        (dict(mlp_layers=()), ValueError),
        (dict(seed=-1), ValueError),
    ],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        NeuMF(N_USERS, N_ITEMS, **kwargs)
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("svd", N_USERS, N_ITEMS)


def _reference_clipped_grad(model, users, items, labels, clip):
    """Sum over examples of per-example gradients clipped to norm ``clip``, / B."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    clipped = 0
    loss_fn = nn.BCEWithLogitsLoss()
    for b in range(users.numel()):
        grads = torch.autograd.grad(
            loss_fn(model(users[b : b + 1], items[b : b + 1]), labels[b : b + 1]), params
        )
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        clipped += factor < 1.0
        for t, g in zip(total, grads, strict=True):
            t += g * factor
    return [t / users.numel() for t in total], clipped


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("freeze_private", [False, True])
def test_opacus_ghost_clipping_matches_per_example_clipping(name, freeze_private):
    from opacus import PrivacyEngine

    model = build_model(name, N_USERS, N_ITEMS, seed=0)
    with torch.no_grad():  # bigger weights so that some gradients get clipped
        for p in model.parameters():
            p.mul_(30.0)
    if freeze_private:
        for p in model.private_parameters():
            p.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    users = torch.randint(0, N_USERS, (16,), generator=gen)
    items = torch.randint(0, N_ITEMS, (16,), generator=gen)
    labels = torch.randint(0, 2, (16,), generator=gen).float()
    clip = 0.05
    expected, clipped = _reference_clipped_grad(model, users, items, labels, clip)
    assert clipped > 0  # the comparison below exercises the clipping

    trainable = [p for p in model.parameters() if p.requires_grad]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(users, items, labels), batch_size=16
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped, optimizer, criterion, loader = PrivacyEngine().make_private(
            module=model,
            optimizer=torch.optim.SGD(trainable, lr=1.0),
            criterion=nn.BCEWithLogitsLoss(),
            data_loader=loader,
            noise_multiplier=0.0,
            max_grad_norm=clip,
            grad_sample_mode="ghost",
            poisson_sampling=False,
        )
        optimizer.zero_grad()
        criterion(wrapped(users, items), labels).backward()
        optimizer.pre_step()  # clip (and add zero noise) into p.grad without stepping
    got = [p.grad for p in trainable]
    assert any(g.abs().sum() > 0 for g in got)
    for g, e in zip(got, expected, strict=True):
        assert torch.allclose(g, e, atol=1e-6, rtol=1e-4)
