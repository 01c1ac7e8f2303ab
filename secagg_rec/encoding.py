"""Float vectors <-> the ring Z_{2^b} used by secure aggregation.

A client clips its update, multiplies it by ``scale`` and rounds *stochastically* (up
with probability equal to the fractional part, so the rounding is unbiased) to an
integer ``q`` with ``|q| <= ceil(weight_max * clip * scale)``. Negative integers are
stored in two's complement mod ``2**bits``; the server's sum of ``n`` such words, read
back as a signed integer in ``[-2**(bits-1), 2**(bits-1))``, is the exact integer sum as
long as ``n * ceil(weight_max * clip * scale) < 2**(bits-1)``. :class:`Quantizer` refuses
any combination for which that could fail and names the smallest ``bits`` that works.

Worked example (``bits = 4``, ring Z_16, ``scale = 1``): client A encodes -3 as
``16 - 3 = 13``, client B encodes 5 as 5. The server adds ``13 + 5 = 18 = 2 (mod 16)``;
2 < 8, so it reads +2 = -3 + 5. With a third client encoding 7, the sum is 9, which
``>= 8`` reads as ``9 - 16 = -7``: wrapped. Here ``n=3, max |q|=7`` needs
``3 * 7 = 21 < 2**(bits-1)``, i.e. ``bits >= 6``, and the quantizer says so.

Weighted averaging: with ``weighted=True`` the client encodes ``[w * x, w]`` (both
masked by the protocol), so the weight, e.g. an example count, never travels in the
clear; the server decodes ``sum(w x) / sum(w)``.

Error bound (stated once, tested): each stochastic rounding errs by less than one unit
``1/scale``, so for ``n`` summed inputs the decoded sum differs from the exact sum of the
clipped (and weighted) inputs by less than ``n / scale`` per coordinate; see
:meth:`Quantizer.sum_error_bound` and :meth:`Quantizer.mean_error_bound`. Unbiasedness
needs ``weight_max * clip * scale < 2**52`` (float64 keeps the fractional part).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Quantizer", "required_bits"]

MAX_BITS = 62


def _max_units(value_bound: float, scale: float) -> int:
    """Largest ``|q|`` stochastic rounding can produce for ``|y| <= value_bound*scale``."""
    return math.ceil(value_bound * scale)


def required_bits(max_clients: int, max_abs_units: int) -> int:
    """Smallest ``bits`` such that ``max_clients`` signed inputs of magnitude at most
    ``max_abs_units`` sum without wrapping: ``n * u < 2**(bits-1)``.

    >>> required_bits(3, 7)   # 21 < 32 = 2**5
    6
    """
    if max_clients < 1 or max_abs_units < 0:
        raise ValueError("max_clients must be >= 1 and max_abs_units >= 0")
    return max(2, (max_clients * max_abs_units).bit_length() + 1)


@dataclass(frozen=True, kw_only=True)
class Quantizer:
    """Clipping, scaling and stochastic rounding into Z_{2^bits}, with a wrap check.

    Args:
        bits: ring width, ``2 <= bits <= 62``.
        clip: per-coordinate bound; each coordinate is clipped to ``[-clip, clip]``
            (after the optional L2 clip). ``> 0``.
        scale: integer units per 1.0 of value (quantization step ``1/scale``). ``> 0``.
        max_clients: the most inputs that will ever be summed (``>= 1``).
        l2_clip: if set, the vector is first scaled down to L2 norm ``<= l2_clip``.
        weighted: encode ``[w*x, w]`` and decode a weighted mean.
        weight_max: weights must lie in ``[0, weight_max]`` (only with ``weighted``).
        weight_scale: units per 1.0 of weight; defaults to ``scale``. Integer weights
            (example counts) with ``weight_scale=1`` are encoded exactly.

    Raises:
        ValueError: a parameter is out of range, or the sum of ``max_clients`` inputs
            could wrap mod ``2**bits`` (the message names the ``bits`` that would do).
    """

    bits: int
    clip: float
    scale: float
    max_clients: int
    l2_clip: float | None = None
    weighted: bool = False
    weight_max: float = 1.0
    weight_scale: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 2 <= self.bits <= MAX_BITS:
            raise ValueError(f"bits must be an int in [2, {MAX_BITS}], got {self.bits!r}")
        for name in ("clip", "scale", "weight_max"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.l2_clip is not None and not (math.isfinite(self.l2_clip) and self.l2_clip > 0):
            raise ValueError(f"l2_clip must be None or > 0, got {self.l2_clip!r}")
        if self.weight_scale is not None and not (
            math.isfinite(self.weight_scale) and self.weight_scale > 0
        ):
            raise ValueError(f"weight_scale must be None or > 0, got {self.weight_scale!r}")
        if not isinstance(self.max_clients, int) or self.max_clients < 1:
            raise ValueError(f"max_clients must be an int >= 1, got {self.max_clients!r}")
        need = self.min_bits()
        if self.bits < need:
            raise ValueError(
                f"bits={self.bits} is too small: the sum of {self.max_clients} inputs with "
                f"clip={self.clip}, scale={self.scale}"
                + (f", weight_max={self.weight_max}" if self.weighted else "")
                + f" could wrap mod 2**{self.bits}; use bits >= {need} "
                f"(or a smaller scale/clip)"
            )

    # -- sizing -------------------------------------------------------------------------

    @property
    def effective_weight_scale(self) -> float:
        """Units per 1.0 of weight (``weight_scale`` or ``scale``)."""
        return self.scale if self.weight_scale is None else float(self.weight_scale)

    def value_units(self) -> int:
        """Largest ``|q|`` of a value coordinate."""
        bound = self.clip * (self.weight_max if self.weighted else 1.0)
        return _max_units(bound, self.scale)

    def weight_units(self) -> int:
        """Largest ``q`` of the weight coordinate (0 when unweighted)."""
        return _max_units(self.weight_max, self.effective_weight_scale) if self.weighted else 0

    def min_bits(self) -> int:
        """Smallest ring width for which ``max_clients`` inputs cannot wrap."""
        units = max(self.value_units(), self.weight_units())
        return required_bits(self.max_clients, units)

    @classmethod
    def fit(
        cls,
        *,
        bits: int,
        clip: float,
        max_clients: int,
        l2_clip: float | None = None,
        weighted: bool = False,
        weight_max: float = 1.0,
    ) -> Quantizer:
        """The finest quantizer (largest ``scale``) for ``bits`` that cannot wrap.

        The weight, when ``weighted``, gets the same unit budget as the values.

        Raises:
            ValueError: ``bits`` leaves no room even for ``scale`` of one unit per
                ``clip`` (too many clients for this ring).
        """
        if not isinstance(max_clients, int) or max_clients < 1:
            raise ValueError(f"max_clients must be an int >= 1, got {max_clients!r}")
        if not isinstance(bits, int) or not 2 <= bits <= MAX_BITS:
            raise ValueError(f"bits must be an int in [2, {MAX_BITS}], got {bits!r}")
        budget = ((1 << (bits - 1)) - 1) // max_clients - 1  # units per client, minus ceil slack
        if budget < 1:
            raise ValueError(
                f"bits={bits} cannot hold the sum of {max_clients} inputs; "
                f"use bits >= {required_bits(max_clients, 2)}"
            )
        budget = min(budget, 1 << 52)
        value_bound = clip * (weight_max if weighted else 1.0)
        scale = budget / value_bound
        weight_scale = budget / weight_max if weighted else None
        return cls(
            bits=bits,
            clip=clip,
            scale=scale,
            max_clients=max_clients,
            l2_clip=l2_clip,
            weighted=weighted,
            weight_max=weight_max,
            weight_scale=weight_scale,
        )

    def encoded_length(self, dim: int) -> int:
        """Words per encoded vector of ``dim`` floats (``dim + 1`` when weighted)."""
        return dim + 1 if self.weighted else dim

    # -- client side --------------------------------------------------------------------

    def clip_vector(self, x: np.ndarray) -> np.ndarray:
        """L2 clip (if set) then per-coordinate clip; returns a new float64 array."""
        out = np.array(x, dtype=np.float64, copy=True).reshape(-1)
        if not np.all(np.isfinite(out)):
            raise ValueError("input vector contains NaN or infinity")
        if self.l2_clip is not None:
            norm = float(np.linalg.norm(out))
            if norm > self.l2_clip:
                out *= self.l2_clip / norm
        np.clip(out, -self.clip, self.clip, out=out)
        return out

    def encode(
        self, x: np.ndarray, rng: np.random.Generator, *, weight: float | None = None
    ) -> np.ndarray:
        """Encode one client's vector into words of Z_{2^bits} (dtype uint64).

        Args:
            x: 1-D float vector (any float dtype); NaN/inf are refused.
            rng: the generator for stochastic rounding (injected for reproducibility).
            weight: required iff ``weighted``; in ``[0, weight_max]``.

        Returns:
            ``encoded_length(len(x))`` words, each in ``[0, 2**bits)``.

        Raises:
            ValueError: NaN/inf in ``x``, missing/extra/out-of-range weight.
        """
        if self.weighted:
            if weight is None or not (0 <= float(weight) <= self.weight_max):
                raise ValueError(f"weight must be in [0, {self.weight_max}], got {weight!r}")
        elif weight is not None:
            raise ValueError("weight given but this quantizer is not weighted")
        values = self.clip_vector(x)
        if self.weighted:
            values *= float(weight)  # type: ignore[arg-type]
        q = self._stochastic_round(values * self.scale, rng)
        if self.weighted:
            qw = self._stochastic_round(
                np.array([float(weight) * self.effective_weight_scale]),  # type: ignore[arg-type]
                rng,
            )
            q = np.concatenate([q, qw])
        return self._to_ring(q)

    @staticmethod
    def _stochastic_round(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        floor = np.floor(y)
        up = rng.random(y.shape) < (y - floor)
        return floor.astype(np.int64) + up

    def _to_ring(self, q: np.ndarray) -> np.ndarray:
        words = q.astype(np.int64).view(np.uint64)
        return np.bitwise_and(words, np.uint64((1 << self.bits) - 1))

    # -- server side --------------------------------------------------------------------

    def to_signed(self, words: np.ndarray) -> np.ndarray:
        """Read words of Z_{2^bits} as signed integers in ``[-2**(bits-1), 2**(bits-1))``."""
        v = np.asarray(words).astype(np.uint64) & np.uint64((1 << self.bits) - 1)
        signed = v.astype(np.int64)
        half = 1 << (self.bits - 1)
        return np.where(signed >= half, signed - (1 << self.bits), signed)

    def decode_sum(self, words: np.ndarray) -> np.ndarray:
        """Float sum of the (weighted) values from an aggregate; weight word dropped."""
        signed = self.to_signed(words)
        if self.weighted:
            signed = signed[:-1]
        return signed.astype(np.float64) / self.scale

    def decode_total_weight(self, words: np.ndarray) -> float:
        """The summed weight carried in the last word (weighted quantizers only)."""
        if not self.weighted:
            raise ValueError("this quantizer is not weighted")
        return float(self.to_signed(words[-1:])[0]) / self.effective_weight_scale

    def decode_mean(self, words: np.ndarray, count: int | None = None) -> np.ndarray:
        """The (weighted) mean from an aggregate.

        Weighted: ``sum(w x) / sum(w)``; unweighted: ``sum(x) / count``.

        Raises:
            ValueError: unweighted without ``count >= 1``, or a total weight <= 0.
        """
        total = self.decode_sum(words)
        if self.weighted:
            w = self.decode_total_weight(words)
            if w <= 0:
                raise ValueError(f"total weight is {w}; cannot form a weighted mean")
            return total / w
        if count is None or count < 1:
            raise ValueError("unweighted decode_mean needs count >= 1")
        return total / count

    def sum_error_bound(self, n: int) -> float:
        """Strict bound on ``|decoded sum - exact sum|`` per coordinate for ``n`` inputs."""
        return n / self.scale

    def mean_error_bound(self, n: int, total_weight: float | None = None) -> float:
        """Bound on ``|decoded mean - exact mean|`` per coordinate for ``n`` inputs.

        Weighted (``total_weight`` = exact sum of weights ``W``):
        ``(n/scale + clip * n/weight_scale) / (W - n/weight_scale)``;
        unweighted: ``1/scale``.

        Raises:
            ValueError: weighted without ``total_weight``, or ``W <= n/weight_scale``.
        """
        if not self.weighted:
            return 1.0 / self.scale
        if total_weight is None:
            raise ValueError("weighted mean_error_bound needs total_weight")
        ew = n / self.effective_weight_scale
        if total_weight <= ew:
            raise ValueError("total weight too small relative to the weight quantization")
        return (n / self.scale + self.clip * ew) / (total_weight - ew)
