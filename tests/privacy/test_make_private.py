"""make_private really privatizes, keeps the loop unchanged, and cleans up after itself.

Clipped sums are checked against per-example gradients computed independently with
``torch.func`` (vmap of grad), and against Opacus's own two-pass ghost clipping.
"""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.utils.data import DataLoader, TensorDataset

from secagg_rec.privacy import make_private
from secagg_rec.privacy.sampling import PoissonBatchSampler

# Opacus hooks mode on embeddings: PyTorch notes that the full backward hook fires on
# output gradients because the integer inputs need none, which is what Opacus wants.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

# ---- models -------------------------------------------------------------------------


class MF(nn.Module):
    """Matrix factorization with an item bias: embeddings only."""

    def __init__(self, users: int = 30, items: int = 40, dim: int = 6) -> None:
        super().__init__()
        self.user = nn.Embedding(users, dim)
        self.item = nn.Embedding(items, dim)
        self.bias = nn.Embedding(items, 1)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return (self.user(u) * self.item(i)).sum(1) + self.bias(i).squeeze(1)


class Towers(nn.Module):
    """Bag of item ids with padding, a linear layer on a sequence, LayerNorm (Opacus
    per-example gradients), a frozen layer, and an MLP head."""

    def __init__(self, padding: bool = True) -> None:
        super().__init__()
        self.user = nn.Embedding(30, 4)
        self.items = nn.Embedding(40, 4, padding_idx=0 if padding else None)
        self.seq = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(8)
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
        self.head = nn.Sequential(nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 1))

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        bag = self.seq(self.items(i)).sum(1)  # [B, L, 4] -> [B, 4]
        x = torch.cat([self.user(u), bag], 1)
        return self.head(self.frozen(self.norm(x))).squeeze(1)


def mf_data(n: int = 48, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(
        torch.randint(0, 30, (n,), generator=g),
        torch.randint(0, 40, (n,), generator=g),
        torch.rand(n, generator=g) * 4,
    )


def towers_data(n: int = 48, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(0, 40, (n, 3), generator=g)
    items[:, 2] = torch.where(torch.rand(n, generator=g) < 0.3, 0, items[:, 2])  # padding
    items[:5, 1] = items[:5, 0]  # repeated ids inside one example
    return TensorDataset(
        torch.randint(0, 30, (n,), generator=g), items, torch.randn(n, generator=g)
    )


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(out, y)


def clipped_sum_reference(
    model: nn.Module, batch: tuple[torch.Tensor, ...], clip: float
) -> dict[str, torch.Tensor]:
    """Σ_i min(1, C/|g_i|) g_i from per-example gradients (torch.func), per parameter."""
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    frozen = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}

    def loss(p, u, i, y):
        out = functional_call(model, {**p, **frozen}, (u.unsqueeze(0), i.unsqueeze(0)))
        return ((out - y.unsqueeze(0)) ** 2).mean()

    per_example = vmap(grad(loss), in_dims=(None, 0, 0, 0))(params, *batch)
    n = batch[0].shape[0]
    norms = torch.sqrt(sum(g.reshape(n, -1).pow(2).sum(1) for g in per_example.values()))
    coef = (clip / (norms + 1e-6)).clamp(max=1.0)
    return {k: torch.einsum("n,n...->...", coef, g) for k, g in per_example.items()}


def one_step(private, model, lr: float = 1.0):
    """Take one step with the private objects; return the batch and the gradient the
    optimizer applied (for SGD: update / lr), checking that the parameters moved by it."""
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    _, optimizer, loader = private
    batch = next(iter(loader))
    optimizer.zero_grad()
    mse(model(batch[0], batch[1]), batch[2]).backward()
    optimizer.step()
    applied = {}
    for name, p in model.named_parameters():
        g = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(before[name] - lr * g, p.detach())
        applied[name] = g
    return batch, applied


# ---- clipping ------------------------------------------------------------------------


def towers_without_padding() -> Towers:
    return Towers(padding=False)


class Heads(nn.Module):
    """Linear layers without a bias, and with a frozen weight but a trainable bias."""

    def __init__(self) -> None:
        super().__init__()
        self.user = nn.Embedding(30, 4)
        self.item = nn.Embedding(40, 4)
        self.no_bias = nn.Linear(8, 6, bias=False)
        self.bias_only = nn.Linear(6, 1)
        self.bias_only.weight.requires_grad_(False)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.user(u), self.item(i)], 1)
        return self.bias_only(torch.tanh(self.no_bias(x))).squeeze(1)


@pytest.mark.parametrize(
    ("mode", "make_model", "make_data"),
    [
        ("ghost", MF, mf_data),
        ("ghost", Towers, towers_data),
        ("ghost", Heads, mf_data),
        ("hooks", MF, mf_data),
        # Opacus's hooks-mode embedding sampler ignores padding_idx (it gives the
        # padding row a gradient PyTorch would not); ghost mode honours it.
        ("hooks", towers_without_padding, towers_data),
    ],
)
def test_step_is_the_clipped_sum_of_per_example_gradients(mode, make_model, make_data):
    torch.manual_seed(1)
    model = make_model()
    ref_model = make_model()
    ref_model.load_state_dict(model.state_dict())
    clip = 0.3
    private = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=1.0),
        DataLoader(make_data(), batch_size=16),
        noise_multiplier=0.0,
        max_grad_norm=clip,
        grad_sample_mode=mode,
        seed=11,
    )
    assert private.grad_sample_mode == mode
    batch, update = one_step(private, model)
    private.close()
    assert len(batch[0]) > 0
    expected = clipped_sum_reference(ref_model, batch, clip)
    b = private.expected_batch_size
    assert b == 16
    for name, value in expected.items():
        torch.testing.assert_close(update[name], value / b, rtol=1e-4, atol=1e-6)
    # Frozen parameters do not move.
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(update[name], torch.zeros_like(p))


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_one_example_gradient_is_clipped_to_exactly_c(mode):
    torch.manual_seed(2)
    model = MF()
    raw_model = MF()
    raw_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in (*model.parameters(), *raw_model.parameters()):
            p.mul_(30)  # large gradients, so clipping bites
    data = TensorDataset(torch.tensor([3]), torch.tensor([5]), torch.tensor([100.0]))
    clip = 0.5
    private = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=1.0),
        DataLoader(data, batch_size=1),  # q = 1: the example is in every batch
        noise_multiplier=0.0,
        max_grad_norm=clip,
        grad_sample_mode=mode,
    )
    _, update = one_step(private, model)
    private.close()
    raw_model.zero_grad()
    mse(raw_model(torch.tensor([3]), torch.tensor([5])), torch.tensor([100.0])).backward()
    raw = torch.cat([p.grad.flatten() for p in raw_model.parameters()])
    step = torch.cat([update[n].flatten() for n, _ in raw_model.named_parameters()])
    assert raw.norm() > 10 * clip
    assert step.norm() == pytest.approx(clip, rel=1e-4)
    torch.testing.assert_close(step, raw * (clip / raw.norm()), rtol=1e-4, atol=1e-7)


def test_no_noise_and_a_huge_clip_bound_is_ordinary_training():
    torch.manual_seed(3)
    private_model, plain_model = Towers(), Towers()
    plain_model.load_state_dict(private_model.state_dict())
    data = towers_data(32)
    private = make_private(
        private_model,
        torch.optim.SGD(private_model.parameters(), lr=0.1),
        DataLoader(data, batch_size=32),  # q = 1: the whole dataset every step
        noise_multiplier=0.0,
        max_grad_norm=1e9,
    )
    _, update = one_step(private, private_model, lr=0.1)
    private.close()
    plain = torch.optim.SGD(plain_model.parameters(), lr=0.1)
    before = {k: v.detach().clone() for k, v in plain_model.named_parameters()}
    plain.zero_grad()
    u, i, y = data.tensors
    mse(plain_model(u, i), y).backward()
    plain.step()
    for name, p in plain_model.named_parameters():
        torch.testing.assert_close(update[name], (before[name] - p.detach()) / 0.1)


def test_matches_opacus_two_pass_ghost_clipping():
    from opacus import PrivacyEngine

    torch.manual_seed(4)
    ours, theirs = MF(), MF()
    theirs.load_state_dict(ours.state_dict())
    data = mf_data(24)
    private = make_private(
        ours,
        torch.optim.SGD(ours.parameters(), lr=1.0),
        DataLoader(data, batch_size=24),
        noise_multiplier=0.0,
        max_grad_norm=0.2,
    )
    batch, update = one_step(private, ours)
    private.close()
    assert len(batch[0]) == 24
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module, optimizer, criterion, _ = PrivacyEngine().make_private(
            module=theirs,
            optimizer=torch.optim.SGD(theirs.parameters(), lr=1.0),
            data_loader=DataLoader(data, batch_size=24),
            criterion=nn.MSELoss(),
            noise_multiplier=0.0,
            max_grad_norm=0.2,
            grad_sample_mode="ghost",
            poisson_sampling=False,
        )
        before = {k: v.detach().clone() for k, v in theirs.named_parameters()}
        optimizer.zero_grad()
        criterion(module(batch[0], batch[1]), batch[2]).backward()
        optimizer.step()
    for name, p in theirs.named_parameters():
        torch.testing.assert_close(update[name], before[name] - p.detach(), rtol=1e-4, atol=1e-7)


# ---- noise ---------------------------------------------------------------------------


class Wide(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(200, 40)  # 8000 coordinates, most unused by a batch
        self.out = nn.Linear(40, 1)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.out(self.table(u)).squeeze(1)


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_noise_has_standard_deviation_sigma_c_over_b(mode):
    sigma, clip, batch = 2.0, 0.7, 10
    data = TensorDataset(
        torch.randint(0, 200, (100,)), torch.zeros(100, dtype=torch.long), torch.randn(100)
    )
    updates = []
    for noise in (sigma, 0.0):
        torch.manual_seed(5)
        model = Wide()
        private = make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=1.0),
            DataLoader(data, batch_size=batch),
            noise_multiplier=noise,
            max_grad_norm=clip,
            grad_sample_mode=mode,
            seed=123,  # same batches in both runs
        )
        _, update = one_step(private, model)
        private.close()
        updates.append(torch.cat([v.flatten() for v in update.values()]))
    noise_part = updates[0] - updates[1]
    n = noise_part.numel()
    expected = sigma * clip / batch
    # The sample std of n = 8041 normals is within 5 standard errors (1/sqrt(2n)).
    assert noise_part.std().item() == pytest.approx(expected, rel=5 / math.sqrt(2 * n))
    assert abs(noise_part.mean().item()) < 5 * expected / math.sqrt(n)
    # Every coordinate got noise, including embedding rows the batch never touched.
    assert (noise_part != 0).float().mean().item() > 0.999


def _noisy_steps(steps: int, *, set_to_none: bool = True, prefetch: bool = True):
    """Each step's gradient and the final weights, for ``steps`` noisy steps."""
    torch.manual_seed(6)
    model = Wide()
    data = TensorDataset(
        torch.randint(0, 200, (100,)), torch.zeros(100, dtype=torch.long), torch.zeros(100)
    )
    private = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=1.0),
        DataLoader(data, batch_size=10),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        steps=steps,
        prefetch_noise=prefetch,
        seed=9,
    )
    _, optimizer, loader = private
    grads = []
    with private:
        for batch, _ in zip(loader, range(steps), strict=False):
            optimizer.zero_grad(set_to_none=set_to_none)
            # The clipped sum (norm <= C = 1 over 8041 coordinates) is small next to
            # the noise (std 0.1 per coordinate): the gradient is mostly noise.
            mse(model(batch[0], batch[1]), batch[2]).backward()
            optimizer.step()
            grads.append(torch.cat([p.grad.flatten().clone() for p in model.parameters()]))
    return grads, {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_consecutive_steps_get_fresh_independent_noise():
    grads, _ = _noisy_steps(4)
    expected = 1.0 * 1.0 / 10
    for g in grads:
        assert g.std().item() == pytest.approx(expected, rel=0.1)
    for a, b in itertools.pairwise(grads):
        assert not torch.equal(a, b)
        corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
        assert abs(corr) < 5 / math.sqrt(a.numel())  # independent draws


def test_zero_grad_without_set_to_none_trains_the_same():
    _, reference = _noisy_steps(5)
    _, kept_buffers = _noisy_steps(5, set_to_none=False)
    for name in reference:
        torch.testing.assert_close(kept_buffers[name], reference[name], rtol=1e-6, atol=1e-7)


def test_weights_tied_between_two_hooked_layers_are_refused():
    from secagg_rec.errors import LocalProtocolError
    from secagg_rec.privacy.ghost import GhostClippingHooks

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.out = nn.Linear(4, 10, bias=False)
            self.out.weight = self.emb.weight  # the classic input/output tying

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.out(self.emb(ids))

    model = Tied()
    hooks = GhostClippingHooks(model, loss_reduction="mean", max_grad_norm=1.0)
    try:
        with pytest.raises(LocalProtocolError, match="two gradients"):
            model(torch.tensor([1, 2, 3])).sum().backward()
    finally:
        hooks.cleanup()


# ---- sampling ------------------------------------------------------------------------


def test_poisson_sampler_includes_each_example_independently_with_rate_q():
    n, q, steps = 1000, 0.05, 2000
    sampler = PoissonBatchSampler(n, q, steps, generator=torch.Generator().manual_seed(7))
    counts = torch.zeros(n)
    sizes = []
    for batch in sampler:
        assert batch == sorted(set(batch))
        counts[batch] += 1
        sizes.append(len(batch))
    sizes_t = torch.tensor(sizes, dtype=torch.float64)
    # Batch size ~ Binomial(n, q): mean 50, variance 47.5.
    assert sizes_t.mean().item() == pytest.approx(n * q, abs=5 * math.sqrt(n * q * (1 - q) / steps))
    assert sizes_t.var().item() == pytest.approx(n * q * (1 - q), rel=0.15)
    # Per-example counts ~ Binomial(steps, q): chi-square with n - 1 degrees of freedom.
    expected = steps * q
    chi2 = ((counts - expected) ** 2 / (expected * (1 - q))).sum().item()
    assert abs(chi2 - n) < 5 * math.sqrt(2 * n)
    assert sampler.last_size == sizes[-1]


def test_poisson_sampler_edges():
    assert list(PoissonBatchSampler(5, 1.0, 2)) == [[0, 1, 2, 3, 4]] * 2
    tiny = list(PoissonBatchSampler(3, 1e-6, 50, generator=torch.Generator().manual_seed(0)))
    assert sum(len(b) for b in tiny) == 0
    with pytest.raises(ValueError):
        PoissonBatchSampler(0, 0.5, 1)
    with pytest.raises(ValueError):
        PoissonBatchSampler(5, 0.0, 1)


def test_loader_keeps_the_dataset_and_the_batch_count():
    data = mf_data(50)
    model = MF()
    private = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(data, batch_size=8),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
    )
    assert private.data_loader.dataset is data
    assert len(private.data_loader) == 7  # ceil(50 / 8)
    assert private.sample_rate == pytest.approx(8 / 50)
    assert private.expected_batch_size == pytest.approx(8)
    private.close()
