"""Poisson sampling for DP-SGD: every example joins every batch independently.

The privacy analysis of DP-SGD (all accountants here) assumes that each batch
contains each of the N examples independently with probability q. Opacus's sampler
draws N uniforms per batch (O(N) a step, O(N²/B) an epoch); this one draws the gaps
between included indices, which are i.i.d. geometric with success probability q, so a
batch costs O(qN) — the same distribution, exactly.

Worked example: with q = 0.25 the gaps G ~ Geometric(0.25) on {1, 2, ...}; gaps
(3, 1, 6, ...) give indices 2, 3, 9, ... (each is the previous + G, starting at -1),
and drawing stops at the first index >= N.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler, default_collate

__all__ = ["PoissonBatchSampler", "poisson_data_loader"]


class PoissonBatchSampler(Sampler[list[int]]):
    """Yields ``steps`` batches of indices in ``[0, num_samples)``, Poisson-sampled.

    Args:
        num_samples: N, ``>= 1``.
        sample_rate: q in ``(0, 1]``; each index is in each batch with probability q.
        steps: batches per pass (one epoch), ``>= 1``.
        generator: the ``torch.Generator`` to draw from (default: torch's global one).

    Batches are sorted lists of distinct indices and may be empty. ``last_size`` is
    the size of the batch yielded last (``None`` before the first); with
    ``num_workers=0`` that is the batch the training loop is holding.

    Raises:
        TypeError, ValueError: bad arguments.
    """

    def __init__(
        self,
        num_samples: int,
        sample_rate: float,
        steps: int,
        generator: torch.Generator | None = None,
    ) -> None:
        for name, value in (("num_samples", num_samples), ("steps", steps)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)):
            raise TypeError(f"sample_rate must be a number, got {type(sample_rate).__name__}")
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.num_samples = num_samples
        self.sample_rate = float(sample_rate)
        self.steps = steps
        self.generator = generator
        mean = num_samples * self.sample_rate
        self._chunk = int(mean + 6.0 * math.sqrt(mean) + 16)
        self.last_size: int | None = None

    def __len__(self) -> int:
        return self.steps

    def sample(self) -> list[int]:
        """One Poisson batch."""
        n, q = self.num_samples, self.sample_rate
        if q == 1.0:
            return list(range(n))
        parts = []
        last = -1.0
        while True:
            gaps = torch.empty(self._chunk, dtype=torch.float64).geometric_(
                q, generator=self.generator
            )
            positions = torch.cumsum(gaps, 0).add_(last)
            inside = positions[positions < n]
            parts.append(inside)
            if inside.numel() < positions.numel():
                break
            last = float(positions[-1])
        return torch.cat(parts).to(torch.int64).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            batch = self.sample()
            self.last_size = len(batch)
            yield batch


def _empty_batch_template(dataset: Any) -> tuple[list[tuple[int, ...]], list[Any]] | None:
    """Shapes ``(0, *shape)`` and dtypes of one item, so an empty batch keeps its form."""
    try:
        item = dataset[0]
    except Exception:
        return None
    fields = item if isinstance(item, (tuple, list)) else (item,)
    shapes = [(0, *tuple(getattr(x, "shape", ()))) for x in fields]
    dtypes = [getattr(x, "dtype", type(x)) for x in fields]
    return shapes, dtypes


def poisson_data_loader(
    data_loader: DataLoader,
    *,
    sample_rate: float,
    steps_per_epoch: int,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A loader over the same dataset, collate function and workers, Poisson-sampled.

    Empty batches come out as tensors with a zero batch dimension (via Opacus's
    collate wrapper), never skipped: skipping would change the privacy analysis.

    Raises:
        ValueError: an ``IterableDataset`` (cannot be Poisson-sampled) or an empty one.
    """
    from opacus.data_loader import wrap_collate_with_empty

    dataset = data_loader.dataset
    if isinstance(dataset, IterableDataset):
        raise ValueError("Poisson sampling needs a map-style dataset, not an IterableDataset")
    n = len(dataset)  # type: ignore[arg-type]
    if n < 1:
        raise ValueError("the data loader's dataset is empty")
    template = _empty_batch_template(dataset)
    collate = wrap_collate_with_empty(
        collate_fn=data_loader.collate_fn or default_collate,
        sample_empty_shapes=template[0] if template else None,
        dtypes=template[1] if template else None,
    )
    sampler = PoissonBatchSampler(n, sample_rate, steps_per_epoch, generator=generator)
    kwargs: dict[str, Any] = {
        "num_workers": data_loader.num_workers,
        "pin_memory": data_loader.pin_memory,
        "timeout": data_loader.timeout,
        "worker_init_fn": data_loader.worker_init_fn,
        "multiprocessing_context": data_loader.multiprocessing_context,
        "persistent_workers": data_loader.persistent_workers,
    }
    if data_loader.num_workers > 0:
        kwargs["prefetch_factor"] = data_loader.prefetch_factor
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, **kwargs)
