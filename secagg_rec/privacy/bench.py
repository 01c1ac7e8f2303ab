"""DP-SGD training-speed benchmark behind ``secagg-rec bench dp``.

One epoch over a synthetic interaction set sized like MovieLens-100K (943 users, 1682
items, 100 000 interactions, binary labels; speed does not depend on the values) of
the project's MF and NeuMF models (factor 32, batch 256, BCE loss, SGD), three ways:

``non_private``   the plain PyTorch loop;
``make_private``  the same loop after :func:`~secagg_rec.privacy.make_private`
                  (ghost clipping, Poisson sampling, noise drawn one step ahead on a
                  helper thread: its default);
``make_private_inline``  the same with ``prefetch_noise=False``: everything on one
                  thread, what the ratio is on a machine without a free core;
``opacus_hooks``  Opacus's own ``PrivacyEngine.make_private`` in its default hooks
                  mode. It is 10-30x slower, so by default only ``hooks_steps`` steps
                  are timed and scaled to an epoch (reported as such).

Variants run interleaved (model by model, variant by variant, ``repeats`` times) so
that load from other processes hits them alike; medians are reported, with ratios to
the non-private median of the same model, for wall time and for this process's CPU
time over all its threads (``time.process_time``, which other processes on a shared
machine disturb far less than wall time; it includes the noise helper thread). Data
loading (a ``DataLoader`` over a ``TensorDataset``, as a user would write it) is inside
every timing.
"""

from __future__ import annotations

import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["BenchConfig", "run_dp_benchmark"]

VARIANTS = ("non_private", "make_private", "make_private_inline", "opacus_hooks")
MODELS = ("mf", "neumf")


@dataclass(frozen=True)
class BenchConfig:
    """Benchmark sizes (defaults: MovieLens-100K-like, factor 32, batch 256)."""

    n_users: int = 943
    n_items: int = 1682
    n_interactions: int = 100_000
    factors: int = 32
    batch_size: int = 256
    lr: float = 0.05
    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    repeats: int = 3
    hooks_steps: int | None = 40
    threads: int = 1
    seed: int = 0
    models: tuple[str, ...] = MODELS

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "n_interactions", "factors", "batch_size", "repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.hooks_steps is not None and self.hooks_steps < 1:
            raise ValueError("hooks_steps must be >= 1 or None (full epochs)")
        if self.threads < 1:
            raise ValueError("threads must be >= 1")
        unknown = set(self.models) - set(MODELS)
        if unknown or not self.models:
            raise ValueError(f"models must be a non-empty subset of {MODELS}, got {self.models}")


def _build_model(name: str, cfg: BenchConfig) -> Any:
    from secagg_rec.rec.models import MatrixFactorization, NeuMF

    if name == "mf":
        return MatrixFactorization(
            cfg.n_users, cfg.n_items, factors=cfg.factors, item_bias=True, seed=cfg.seed
        )
    return NeuMF(cfg.n_users, cfg.n_items, factors=cfg.factors, seed=cfg.seed)


def _dataset(cfg: BenchConfig) -> Any:
    import torch
    from torch.utils.data import TensorDataset

    gen = torch.Generator().manual_seed(cfg.seed)
    users = torch.randint(0, cfg.n_users, (cfg.n_interactions,), generator=gen)
    items = torch.randint(0, cfg.n_items, (cfg.n_interactions,), generator=gen)
    labels = torch.randint(0, 2, (cfg.n_interactions,), generator=gen).float()
    return TensorDataset(users, items, labels)


def _epoch(model: Any, optimizer: Any, loader: Any, criterion: Any, limit: int | None) -> int:
    steps = 0
    for users, items, labels in loader:
        optimizer.zero_grad()
        loss = criterion(model(users, items), labels)
        loss.backward()
        optimizer.step()
        steps += 1
        if limit is not None and steps >= limit:
            break
    return steps


def _time_variant(variant: str, model_name: str, cfg: BenchConfig, dataset: Any) -> dict[str, Any]:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    model = _build_model(model_name, cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    criterion = nn.BCEWithLogitsLoss()
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True)
    steps_per_epoch = len(loader)
    setup = 0.0
    limit: int | None = None
    close: Callable[[], None] = lambda: None  # noqa: E731
    if variant in ("make_private", "make_private_inline"):
        from secagg_rec.privacy import make_private

        t0 = time.perf_counter()
        private = make_private(
            model,
            optimizer,
            loader,
            noise_multiplier=cfg.noise_multiplier,
            max_grad_norm=cfg.max_grad_norm,
            epochs=1,
            prefetch_noise=variant == "make_private",
        )
        setup = time.perf_counter() - t0
        model, optimizer, loader = private
        close = private.close
    elif variant == "opacus_hooks":
        from opacus import PrivacyEngine

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            engine = PrivacyEngine(accountant="prv")
            model, optimizer, loader = engine.make_private(
                module=model,
                optimizer=optimizer,
                data_loader=loader,
                noise_multiplier=cfg.noise_multiplier,
                max_grad_norm=cfg.max_grad_norm,
            )
        setup = time.perf_counter() - t0
        limit = cfg.hooks_steps
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps = _epoch(model, optimizer, loader, criterion, limit)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    close()
    scaled = limit is not None and steps < steps_per_epoch
    factor = steps_per_epoch / steps if scaled else 1.0
    return {
        "epoch_seconds": elapsed * factor,
        "cpu_seconds": cpu * factor,
        "steps_timed": steps,
        "scaled": scaled,
        "setup_seconds": setup,
    }


def _noise_floor(model_name: str, cfg: BenchConfig) -> dict[str, float]:
    """CPU seconds to draw one epoch's Gaussian noise for every parameter (a cost no
    DP-SGD implementation avoids: each step noises every coordinate)."""
    import math

    import torch

    model = _build_model(model_name, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    steps = math.ceil(cfg.n_interactions / cfg.batch_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    c0 = time.process_time()
    for _ in range(steps):
        for p in params:
            torch.empty_like(p).normal_(0.0, 1.0, generator=gen)
    return {
        "noise_cpu_seconds": time.process_time() - c0,
        "parameters": float(sum(p.numel() for p in params)),
    }


def run_dp_benchmark(
    cfg: BenchConfig | None = None, *, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run the benchmark; return a JSON-ready dict of settings, medians and ratios.

    Returns:
        ``{"machine": ..., "config": ..., "results": {model: {variant: {...}}}}`` where
        each variant has ``epoch_seconds`` (median wall time), ``ratio`` (over the
        non-private median), ``cpu_seconds`` / ``cpu_ratio`` (the same for process CPU
        time), ``runs`` (all wall times), ``setup_seconds`` and ``scaled_from_steps``;
        ``noise_floor`` gives the CPU time of drawing one epoch's noise alone, as a
        share of the non-private epoch.
    """
    import torch

    cfg = cfg or BenchConfig()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        dataset = _dataset(cfg)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            m: {v: [] for v in VARIANTS} for m in cfg.models
        }
        for rep in range(cfg.repeats):
            for model_name in cfg.models:
                for variant in VARIANTS:
                    if variant == "opacus_hooks" and cfg.hooks_steps is not None and rep > 0:
                        continue  # one scaled run is enough for a 10-30x gap
                    result = _time_variant(variant, model_name, cfg, dataset)
                    runs[model_name][variant].append(result)
                    if progress is not None:
                        progress(
                            f"repeat {rep + 1}/{cfg.repeats} {model_name} {variant}: "
                            f"{result['epoch_seconds']:.2f} s/epoch"
                        )
        floors = {m: _noise_floor(m, cfg) for m in cfg.models}
    finally:
        torch.set_num_threads(threads_before)
    results: dict[str, Any] = {}
    for model_name, by_variant in runs.items():
        base = statistics.median(r["epoch_seconds"] for r in by_variant["non_private"])
        base_cpu = statistics.median(r["cpu_seconds"] for r in by_variant["non_private"])
        results[model_name] = {}
        for variant, rs in by_variant.items():
            med = statistics.median(r["epoch_seconds"] for r in rs)
            med_cpu = statistics.median(r["cpu_seconds"] for r in rs)
            results[model_name][variant] = {
                "epoch_seconds": med,
                "ratio": med / base,
                "cpu_seconds": med_cpu,
                "cpu_ratio": med_cpu / base_cpu,
                "runs": [round(r["epoch_seconds"], 4) for r in rs],
                "setup_seconds": statistics.median(r["setup_seconds"] for r in rs),
                "scaled_from_steps": rs[0]["steps_timed"] if rs[0]["scaled"] else None,
            }
        results[model_name]["noise_floor"] = {
            "parameters": int(floors[model_name]["parameters"]),
            "cpu_seconds": floors[model_name]["noise_cpu_seconds"],
            "cpu_ratio_of_non_private": floors[model_name]["noise_cpu_seconds"] / base_cpu,
        }
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": cfg.threads,
            "date": time.strftime("%Y-%m-%d"),
        },
        "config": {
            k: getattr(cfg, k)
            for k in (
                "n_users",
                "n_items",
                "n_interactions",
                "factors",
                "batch_size",
                "noise_multiplier",
                "max_grad_norm",
                "repeats",
                "hooks_steps",
            )
        },
        "results": results,
    }
