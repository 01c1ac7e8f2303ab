"""Privacy events: frozen records of one run of a DP mechanism.

A :class:`DPSGDEvent` is what DP-SGD with Poisson sampling does to one client's data:
``steps`` releases of a clipped gradient sum with Gaussian noise, each over a batch in
which every example is included independently with probability ``sample_rate``. It is
a value (frozen, hashable, validated on construction), like ``dp_accounting``'s
``DpEvent``; accountants turn a sequence of them into ε.

Worked example (the numbers used throughout the tests)::

    >>> e = DPSGDEvent(noise_multiplier=1.0, sample_rate=1.31e-4, steps=3000)
    >>> e.steps_with(steps=1000)
    DPSGDEvent(noise_multiplier=1.0, sample_rate=0.000131, steps=1000)
    >>> merge_events([e, e]) == (DPSGDEvent(1.0, 1.31e-4, 6000),)
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

__all__ = ["DPSGDEvent", "merge_events", "total_steps"]


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class DPSGDEvent:
    """``steps`` Poisson-sampled Gaussian mechanism releases (one DP-SGD run).

    Attributes:
        noise_multiplier: σ, the noise standard deviation divided by the clip bound C
            (noise std on the gradient *sum* is σ·C). ``>= 0``; ``0`` means no noise,
            so ε is infinite as soon as ``steps > 0``.
        sample_rate: q, the probability that a given example is in a given batch,
            in ``(0, 1]``.
        steps: T, the number of noisy optimizer steps, an int ``>= 0``.

    Raises:
        TypeError: a field of the wrong type (``steps`` must be an int, not a float).
        ValueError: a field out of its range, or not finite.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        sigma = _check_real("noise_multiplier", self.noise_multiplier)
        q = _check_real("sample_rate", self.sample_rate)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int):
            raise TypeError(f"steps must be an int, got {type(self.steps).__name__}")
        if sigma < 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {sigma}")
        if not 0 < q <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {q}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        # Normalise ints to floats so equal events compare and hash equal.
        object.__setattr__(self, "noise_multiplier", sigma)
        object.__setattr__(self, "sample_rate", q)

    @property
    def is_noiseless(self) -> bool:
        """True when the event releases something without noise (ε = ∞)."""
        return self.noise_multiplier == 0.0 and self.steps > 0

    def steps_with(self, *, steps: int) -> DPSGDEvent:
        """The same mechanism run for a different number of steps."""
        return replace(self, steps=steps)


def merge_events(events: Iterable[DPSGDEvent]) -> tuple[DPSGDEvent, ...]:
    """Compose events that share (σ, q) into one event with the summed steps.

    Composition of identical mechanisms is exactly self-composition, so this changes no
    ε; it only makes accountants faster. Events with zero steps are dropped. The order
    of first appearance is kept.

    Raises:
        TypeError: an element is not a :class:`DPSGDEvent`.
    """
    steps: dict[tuple[float, float], int] = {}
    for event in events:
        if not isinstance(event, DPSGDEvent):
            raise TypeError(f"expected DPSGDEvent, got {type(event).__name__}")
        if event.steps == 0:
            continue
        key = (event.noise_multiplier, event.sample_rate)
        steps[key] = steps.get(key, 0) + event.steps
    return tuple(DPSGDEvent(s, q, t) for (s, q), t in steps.items())


def total_steps(events: Iterable[DPSGDEvent]) -> int:
    """Sum of ``steps`` over ``events``."""
    return sum(e.steps for e in events)
