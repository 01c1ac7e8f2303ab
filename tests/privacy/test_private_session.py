"""The private session: accounting from the optimizer step, the ledger, guards that
refuse non-private steps, argument checks before any work, and a clean detach."""

from __future__ import annotations

import gc
import math
import warnings
import weakref

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from secagg_rec.errors import BudgetExceededError, LocalProtocolError
from secagg_rec.privacy import (
    DPSGDEvent,
    PrivacyLedger,
    close_private,
    epsilon,
    fix_module,
    make_private,
    module_problems,
)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 4)
        self.lin = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.emb(x)).squeeze(1)


def data(n: int = 40) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randint(0, 20, (n,), generator=g), torch.randn(n, generator=g))


def setup(**kwargs):
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(data(kwargs.pop("n", 40)), batch_size=kwargs.pop("batch_size", 10))
    kwargs.setdefault("max_grad_norm", 1.0)
    if "target_epsilon" not in kwargs:
        kwargs.setdefault("noise_multiplier", 1.0)
    return model, optimizer, loader, kwargs


def train(private, epochs: int = 1) -> None:
    model, optimizer, loader = private
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()


def hooks_on(module: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
        for m in module.modules()
    )


# ---- accounting ----------------------------------------------------------------------


def test_steps_are_counted_from_the_optimizer_and_give_the_event():
    model, opt, loader, kw = setup()
    private = make_private(model, opt, loader, epochs=2, **kw)
    assert private.planned_steps == 8  # 2 epochs x ceil(40/10)
    assert private.steps_taken == 0 and private.epsilon() == 0.0
    train(private, epochs=2)
    assert private.steps_taken == 8
    assert private.event == DPSGDEvent(1.0, 0.25, 8)
    assert private.epsilon() == epsilon(DPSGDEvent(1.0, 0.25, 8), 1e-5)
    assert private.epsilon(1e-3) < private.epsilon()
    private.close()


def test_a_step_past_the_plan_is_refused_and_changes_nothing():
    model, opt, loader, kw = setup()
    private = make_private(model, opt, loader, steps=3, **kw)
    _, optimizer, dp_loader = private
    x, y = next(iter(dp_loader))
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    with pytest.raises(BudgetExceededError, match="planned"):
        optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert private.steps_taken == 3
    private.close()


def test_target_epsilon_calibrates_the_noise_for_the_planned_steps():
    model, opt, loader, kw = setup(target_epsilon=2.0, target_delta=1e-6)
    private = make_private(model, opt, loader, epochs=3, **kw)
    planned = private.planned_event
    assert planned is not None and planned.steps == 12
    assert 0.98 * 2.0 <= epsilon(planned, 1e-6) <= 2.0
    assert private.delta == 1e-6
    private.close()


# ---- ledger --------------------------------------------------------------------------


def test_ledger_reserves_before_training_and_close_commits_the_steps(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db")
    ledger.set_budget("u1", epsilon=10.0, delta=1e-6)
    model, opt, loader, kw = setup()
    private = make_private(
        model, opt, loader, epochs=2, ledger=ledger, client_id="u1", round_id=4, **kw
    )
    assert private.delta == 1e-6  # the budget's δ by default
    (entry,) = ledger.events("u1")
    assert (entry.status, entry.event.steps, entry.round_id) == ("reserved", 8, "4")
    _, optimizer, dp_loader = private
    for x, y in list(dp_loader)[:3]:
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    private.close()
    (entry,) = ledger.events("u1")
    assert (entry.status, entry.event.steps, entry.planned_steps) == ("committed", 3, 8)
    assert ledger.epsilon_spent("u1") == epsilon(DPSGDEvent(1.0, 0.25, 3), 1e-6)


def test_commit_ends_training(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db")
    ledger.set_budget("u1", epsilon=10.0, delta=1e-6)
    model, opt, loader, kw = setup()
    private = make_private(model, opt, loader, epochs=1, ledger=ledger, client_id="u1", **kw)
    train(private)
    entry = private.commit()
    assert entry is not None and entry.status == "committed"
    assert private.commit() == entry
    _, optimizer, dp_loader = private
    x, y = next(iter(dp_loader))
    optimizer.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    with pytest.raises(LocalProtocolError, match="committed"):
        optimizer.step()
    private.close()
    assert len(ledger.events("u1")) == 1


def test_a_session_without_steps_cancels_its_reservation(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db")
    ledger.set_budget("u1", epsilon=10.0, delta=1e-6)
    model, opt, loader, kw = setup()
    with make_private(model, opt, loader, epochs=1, ledger=ledger, client_id="u1", **kw):
        pass
    assert ledger.events("u1") == []
    assert ledger.events("u1", include_cancelled=True)[0].status == "cancelled"


def test_a_refused_round_touches_nothing(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.db")
    ledger.set_budget("u1", epsilon=5.0, delta=1e-6)
    model, opt, loader, kw = setup()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(BudgetExceededError):
        make_private(model, opt, loader, epochs=5, ledger=ledger, client_id="u1", **kw)
    assert hooks_on(model) == 0
    assert ledger.events("u1", include_cancelled=True) == []
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # The module is free for a smaller round.
    private = make_private(model, opt, loader, steps=1, ledger=ledger, client_id="u1", **kw)
    private.close()


# ---- guards ---------------------------------------------------------------------------


def test_a_step_without_backward_is_refused():
    model, opt, loader, kw = setup(n=500)
    private = make_private(model, opt, loader, **kw)
    _, optimizer, dp_loader = private
    next(iter(dp_loader))  # a non-empty batch (q = 0.02, N = 500)
    assert dp_loader.batch_sampler.last_size > 0
    with pytest.raises(LocalProtocolError, match="without a backward"):
        optimizer.step()
    private.close()


def test_two_backward_passes_before_a_step_are_refused():
    model, opt, loader, kw = setup()
    private = make_private(model, opt, loader, **kw)
    _, optimizer, dp_loader = private
    x, y = next(iter(dp_loader))
    optimizer.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    with pytest.raises(LocalProtocolError, match="two"):
        nn.functional.mse_loss(model(x), y).backward()
    private.close()


def test_an_empty_poisson_batch_gives_a_noise_only_step():
    model, opt, loader, kw = setup(n=3, batch_size=1)
    private = make_private(model, opt, loader, seed=0, **kw)
    _, optimizer, dp_loader = private
    sizes = []
    for x, y in (batch for _ in range(5) for batch in dp_loader):
        sizes.append(len(x))
        before = [p.detach().clone() for p in model.parameters()]
        optimizer.zero_grad()
        if len(x) == 0:
            optimizer.step()  # allowed: the batch is known to be empty
        else:
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
        moved = [not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)]
        assert all(moved)  # noise moves every parameter, even on an empty batch
    assert 0 in sizes
    assert private.steps_taken == len(sizes)
    private.close()


def test_the_ordinary_loop_orders_work():
    # zero_grad after the forward pass, and evaluation under no_grad in between.
    model, opt, loader, kw = setup()
    private = make_private(model, opt, loader, **kw)
    _, optimizer, dp_loader = private
    for x, y in dp_loader:
        out = model(x)
        loss = nn.functional.mse_loss(out, y)
        optimizer.zero_grad()
        loss.backward()
        with torch.no_grad():
            model(x)
        optimizer.step()
    model.eval()
    with torch.no_grad():
        model(torch.arange(5))
    assert private.steps_taken == len(dp_loader)
    private.close()


def test_a_closed_session_refuses_steps_and_a_module_takes_one_session_at_a_time():
    model, opt, loader, kw = setup()
    private = make_private(model, opt, loader, **kw)
    with pytest.raises(LocalProtocolError, match="open private session"):
        make_private(model, opt, loader, **kw)
    private.close()
    private.close()  # idempotent
    with pytest.raises(LocalProtocolError, match="closed"):
        private.optimizer.step()
    close_private(model)  # nothing attached: no-op
    make_private(model, opt, loader, **kw)
    close_private(model)
    assert hooks_on(model) == 0


# ---- module checks ---------------------------------------------------------------------


def test_unsupported_layers_are_named_and_fix_module_replaces_them():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    problems = module_problems(model)
    assert any("BatchNorm" in p for p in problems)
    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 1)), batch_size=4)
    with pytest.raises(ValueError, match=r"BatchNorm.*fix_module"):
        make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            loader,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
        )
    assert hooks_on(model) == 0
    fixed = fix_module(model)
    assert module_problems(fixed) == []
    private = make_private(
        fixed,
        torch.optim.SGD(fixed.parameters(), lr=0.1),
        loader,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
    )
    private.close()


def test_sparse_embeddings_are_refused():
    model = nn.Sequential(nn.Embedding(10, 3, sparse=True))
    assert any("sparse" in p for p in module_problems(model))


def test_a_trainable_parameter_outside_the_optimizer_is_refused():
    model = Net()
    opt = torch.optim.SGD(model.lin.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"emb\.weight"):
        make_private(
            model, opt, DataLoader(data(), batch_size=10), noise_multiplier=1.0, max_grad_norm=1.0
        )
    model.emb.requires_grad_(False)  # frozen is fine
    make_private(
        model, opt, DataLoader(data(), batch_size=10), noise_multiplier=1.0, max_grad_norm=1.0
    ).close()


def test_shared_parameters_fall_back_to_hooks_mode_with_a_warning():
    model = Net()
    model.emb2 = model.emb  # the same module twice
    with pytest.warns(UserWarning, match="hooks mode"):
        private = make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            DataLoader(data(), batch_size=10),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
        )
    assert private.grad_sample_mode == "hooks"
    private.close()
    with pytest.raises(ValueError, match="shared"):
        make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            DataLoader(data(), batch_size=10),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            grad_sample_mode="ghost",
        )


class Stream(IterableDataset):
    def __iter__(self):
        yield from ()


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"noise_multiplier": None}, ValueError),  # neither σ nor target
        ({"target_epsilon": 1.0}, ValueError),  # both σ and target
        ({"noise_multiplier": -1.0}, ValueError),
        ({"noise_multiplier": "1"}, TypeError),
        ({"max_grad_norm": 0.0}, ValueError),
        ({"max_grad_norm": float("inf")}, ValueError),
        ({"epochs": 1, "steps": 2}, ValueError),
        ({"steps": 0}, ValueError),
        ({"steps": 2.5}, TypeError),
        ({"grad_sample_mode": "ew"}, ValueError),
        ({"accountant": "gdp"}, ValueError),
        ({"loss_reduction": "none"}, ValueError),
        ({"client_id": 7}, TypeError),
        ({"round_id": 1.5}, TypeError),
        ({"seed": "x"}, TypeError),
        ({"ledger": "ledger.db", "client_id": "u", "epochs": 1}, TypeError),
    ],
)
def test_bad_arguments_raise_before_anything_is_attached(change, error):
    model, opt, loader, kw = setup()
    kw.update(change)
    kw = {k: v for k, v in kw.items() if v is not None}
    with pytest.raises(error):
        make_private(model, opt, loader, **kw)
    assert hooks_on(model) == 0


def test_more_bad_arguments(tmp_path):
    model, opt, loader, kw = setup()
    ledger = PrivacyLedger(tmp_path / "l.db")
    ledger.set_budget("u", epsilon=1.0, delta=1e-5)
    with pytest.raises(ValueError, match="client_id"):
        make_private(model, opt, loader, ledger=ledger, epochs=1, **kw)
    with pytest.raises(ValueError, match="planned"):
        make_private(model, opt, loader, ledger=ledger, client_id="u", **kw)
    with pytest.raises(ValueError, match="target_epsilon needs"):
        make_private(model, opt, loader, target_epsilon=1.0, max_grad_norm=1.0)
    with pytest.raises(ValueError, match="IterableDataset"):
        make_private(model, opt, DataLoader(Stream(), batch_size=2), **kw)
    with pytest.raises(TypeError):
        make_private("model", opt, loader, **kw)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        make_private(model, "opt", loader, **kw)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        make_private(model, opt, [1, 2], **kw)  # type: ignore[arg-type]
    assert ledger.events("u", include_cancelled=True) == []
    assert hooks_on(model) == 0


# ---- lifecycle ----------------------------------------------------------------------------


def test_close_removes_every_trace_and_many_rounds_do_not_accumulate():
    model = Net()
    keys = list(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(data(), batch_size=10)
    refs = []
    for round_id in range(30):
        with make_private(
            model, opt, loader, noise_multiplier=1.0, max_grad_norm=1.0, steps=2, round_id=round_id
        ) as private:
            _, optimizer, dp_loader = private
            for _, (x, y) in zip(range(2), dp_loader, strict=False):
                optimizer.zero_grad()
                nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
            refs.append(weakref.ref(private))
        del private, optimizer, dp_loader
        assert hooks_on(model) == 0
        assert list(model.state_dict()) == keys
        for p in model.parameters():
            for attr in ("grad_sample", "_forward_counter", "_norm_sample", "summed_grad"):
                assert not hasattr(p, attr)
        for m in model.modules():
            assert "activations" not in m.__dict__
            assert not hasattr(m, "autograd_grad_sample_hooks")
    gc.collect()
    assert all(r() is None for r in refs)
    # The original optimizer still trains the model normally.
    x, y = data().tensors
    opt.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    assert all(math.isfinite(v) for p in model.parameters() for v in p.detach().flatten())


def test_criterion_is_accepted_and_returned_unchanged():
    model, opt, loader, kw = setup()
    criterion = nn.MSELoss()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: ghost clipping needs no criterion
        private = make_private(model, opt, loader, criterion=criterion, **kw)
    assert private.criterion is criterion
    assert private.grad_sample_mode == "ghost"
    private.close()
