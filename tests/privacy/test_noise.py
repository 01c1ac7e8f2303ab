"""The noise stream: the same noise with or without the helper thread, never a draw
past the plan, and no thread left behind."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secagg_rec.privacy import make_private
from secagg_rec.privacy.noise import NoiseStream, split_like
from tests.privacy.test_make_private import _noisy_steps


def _noise_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("secagg-rec-noise")]


def _draws(prefetch: bool, stds: list[float], limit: int | None = None) -> list[torch.Tensor]:
    stream = NoiseStream(
        1000, generator=torch.Generator().manual_seed(5), prefetch=prefetch, limit=limit
    )
    try:
        return [stream.take(s) for s in stds]
    finally:
        stream.close()


def test_prefetching_gives_the_same_noise_in_the_same_order():
    stds = [1.0, 1.0, 0.5, 0.5, 2.0]
    ahead, inline = _draws(True, stds), _draws(False, stds)
    for a, b in zip(ahead, inline, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0.0)
    # Distinct draws, each with its own scale.
    assert not torch.equal(ahead[0], ahead[1])
    assert ahead[4].std().item() == pytest.approx(2.0, rel=0.15)
    assert ahead[2].std().item() == pytest.approx(0.5, rel=0.15)


def test_no_draw_is_made_past_the_limit():
    gen_used = torch.Generator().manual_seed(5)
    stream = NoiseStream(1000, generator=gen_used, prefetch=True, limit=3)
    for _ in range(3):
        stream.take(1.0)
    with pytest.raises(RuntimeError, match="all 3 planned noise draws"):
        stream.take(1.0)
    stream.close()
    # The generator advanced by exactly three draws: nothing was drawn ahead.
    reference = torch.Generator().manual_seed(5)
    for _ in range(3):
        torch.empty(1000).normal_(generator=reference)
    assert torch.equal(gen_used.get_state(), reference.get_state())


def test_close_stops_the_thread_and_later_takes_raise():
    before = len(_noise_threads())
    stream = NoiseStream(10, generator=torch.Generator().manual_seed(0))
    stream.take(1.0)  # starts the helper and one draw ahead
    assert len(_noise_threads()) == before + 1
    stream.close()
    stream.close()
    assert len(_noise_threads()) == before
    with pytest.raises(RuntimeError, match="closed"):
        stream.take(1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"numel": 0}, "numel"), ({"dtype": torch.int64}, "floating"), ({"limit": -1}, "limit")],
)
def test_bad_arguments(kwargs, match):
    args = {"numel": 4, **kwargs}
    numel = args.pop("numel")
    with pytest.raises(ValueError, match=match):
        NoiseStream(numel, **args)
    with pytest.raises(ValueError, match="std"):
        NoiseStream(4).take(-1.0)


def test_split_like_gives_views_in_parameter_order():
    params = [torch.zeros(2, 3), torch.zeros(4), torch.zeros(1, 1)]
    flat = torch.arange(11.0)
    views = split_like(flat, params)
    assert [v.shape for v in views] == [p.shape for p in params]
    assert views[1].tolist() == [6.0, 7.0, 8.0, 9.0]
    views[2].fill_(-1.0)
    assert flat[10].item() == -1.0  # views, not copies
    with pytest.raises(ValueError, match="11 elements"):
        split_like(flat, params[:2])


def test_make_private_trains_identically_with_and_without_prefetching():
    before = len(_noise_threads())
    (_, ahead), (_, inline) = _noisy_steps(5), _noisy_steps(5, prefetch=False)
    for name in ahead:
        torch.testing.assert_close(ahead[name], inline[name], rtol=1e-6, atol=1e-7)
    assert len(_noise_threads()) == before  # the session's close() stopped its helper


def test_a_failed_draw_raises_once_and_the_stream_goes_on(monkeypatch):
    import secagg_rec.privacy.noise as noise_module

    real_fill = noise_module._fill
    calls = {"n": 0}

    def flaky(out, std, generator):
        calls["n"] += 1
        if calls["n"] == 2:  # the first draw made ahead, on the helper thread
            raise RuntimeError("simulated failure in the helper thread")
        return real_fill(out, std, generator)

    monkeypatch.setattr(noise_module, "_fill", flaky)
    stream = NoiseStream(100, generator=torch.Generator().manual_seed(0))
    try:
        assert stream.take(1.0).shape == (100,)
        with pytest.raises(RuntimeError, match="simulated failure"):
            stream.take(1.0)
        assert stream.take(1.0).shape == (100,)  # drawn inline, then ahead again
        assert stream.take(1.0).shape == (100,)
    finally:
        stream.close()


def test_close_while_a_draw_is_in_flight():
    before = len(_noise_threads())
    stream = NoiseStream(4_000_000, generator=torch.Generator().manual_seed(0))
    stream.take(1.0)  # the next 4M-float draw (tens of ms) starts on the helper
    stream.close()
    assert len(_noise_threads()) == before
    with pytest.raises(RuntimeError, match="closed"):
        stream.take(1.0)


def test_no_helper_thread_with_loader_workers():
    model = nn.Linear(3, 1)
    data = TensorDataset(torch.randn(40, 3), torch.randn(40, 1))
    private = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(data, batch_size=8, num_workers=1),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        epochs=1,
    )
    before = len(_noise_threads())
    with private:
        _, optimizer, loader = private
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
            assert len(_noise_threads()) == before  # forked workers: nothing ahead
