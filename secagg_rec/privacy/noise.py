"""Gaussian noise for DP-SGD steps, drawn one step ahead on a helper thread.

Every DP-SGD step adds i.i.d. N(0, std²) noise to every coordinate of every trainable
parameter. On embedding models that is most of what DP costs: NeuMF sized for
MovieLens-100K has 170,657 parameters, whose noise takes ~1.3 ms a step on one core
here, about as much as all the clipping work together (docs/benchmarks.md#dp-training).
The noise does not depend on the data, so :class:`NoiseStream` draws the *next* step's
noise on a helper thread while the current step's data loading, forward and backward
run (PyTorch releases the GIL inside its kernels, so the draw uses a second core when
there is one). It saves wall time, not CPU time: the process's CPU time even grows a
little, as the two threads share caches (and, on a 2-vCPU VM, often one physical
core); docs/benchmarks.md#dp-training has both. Without a free core the draw runs
whenever the helper thread gets one, at about the inline cost.

Determinism: draws are made one at a time, in order, from the one ``torch.Generator``
the stream owns; the main thread never touches it. A seeded generator therefore gives
the same noise sequence with or without the helper thread.

One draw is one flat float tensor for all parameters (one kernel call instead of one
per parameter); :func:`split_like` cuts it into per-parameter views.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import torch

__all__ = ["NoiseStream", "split_like"]


def _fill(
    out: torch.Tensor, std: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, float]:
    out.normal_(0.0, std, generator=generator)
    return out, std


class NoiseStream:
    """Flat N(0, std²) noise vectors of ``numel`` floats, one per :meth:`take`.

    Args:
        numel: floats per draw, >= 1.
        dtype: a floating dtype (the parameters' dtype).
        generator: the source of randomness (a CPU ``torch.Generator``; ``None`` uses
            torch's global generator, which then must not be drawn from elsewhere
            while a draw is in flight).
        prefetch: draw the next vector on a helper thread right after each
            :meth:`take`. ``False`` draws in :meth:`take` itself.
        limit: the most draws that will ever be taken (e.g. the planned steps), so
            that no draw is started past the last one; ``None``: unlimited.

    Raises:
        ValueError: ``numel`` < 1, a non-floating ``dtype`` or ``limit`` < 0.
    """

    def __init__(
        self,
        numel: int,
        *,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
        prefetch: bool = True,
        limit: int | None = None,
    ) -> None:
        if numel < 1:
            raise ValueError(f"numel must be >= 1, got {numel}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        self.numel = numel
        self.dtype = dtype
        self.generator = generator
        self.prefetch = prefetch
        self.limit = limit
        self.taken = 0
        self._pending: Future[tuple[torch.Tensor, float]] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._finalizer: weakref.finalize | None = None
        self._closed = False

    def take(self, std: float) -> torch.Tensor:
        """The next noise vector, N(0, std²) in every coordinate, flat ``[numel]``.

        ``std`` may change between calls: a vector drawn ahead at another std is
        rescaled (an exact change of scale of a Gaussian).

        Raises:
            RuntimeError: the stream is closed, or ``limit`` draws were taken.
            ValueError: ``std`` < 0 or not finite.
        """
        if self._closed:
            raise RuntimeError("the noise stream is closed")
        if not (std >= 0 and std != float("inf")):
            raise ValueError(f"std must be finite and >= 0, got {std}")
        if self.limit is not None and self.taken >= self.limit:
            raise RuntimeError(f"all {self.limit} planned noise draws are taken")
        if self._pending is not None:
            pending, self._pending = self._pending, None
            noise, drawn_std = pending.result()  # a failed draw raises once, here
            if drawn_std != std:
                noise.mul_(std / drawn_std)  # prefetching only happens at std > 0
        else:
            noise, _ = _fill(self._empty(), std, self.generator)
        self.taken += 1
        if self.prefetch and std > 0 and (self.limit is None or self.taken < self.limit):
            self._pending = self._pool().submit(_fill, self._empty(), std, self.generator)
        return noise

    def _empty(self) -> torch.Tensor:
        return torch.empty(self.numel, dtype=self.dtype)

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="secagg-rec-noise")
            # A stream dropped without close() still lets its thread go.
            self._finalizer = weakref.finalize(self, self._executor.shutdown, wait=False)
        return self._executor

    def close(self) -> None:
        """Wait for a draw in flight (discarding it) and stop the helper thread.
        Idempotent; :meth:`take` raises afterwards."""
        self._closed = True
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None


def split_like(flat: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Views of ``flat`` shaped like each of ``params`` in order (``flat`` must hold
    exactly their total number of elements).

    Raises:
        ValueError: the sizes do not add up.
    """
    sizes = [p.numel() for p in params]
    if flat.numel() != sum(sizes):
        raise ValueError(f"flat has {flat.numel()} elements, the parameters {sum(sizes)}")
    return [part.view(p.shape) for part, p in zip(torch.split(flat, sizes), params, strict=True)]
