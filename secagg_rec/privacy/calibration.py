"""Calibration: (target ε, δ, sample rate, steps) → the smallest noise multiplier.

``calibrate_noise`` searches σ so that ``epsilon(DPSGDEvent(σ, q, T), δ) <= target`` and
is within ``rtol`` of it (default 1%), by the same accountant that will later audit the
spend, so a calibrated run never shows up as over budget.

Steps can be given directly or as local epochs × rounds (federated training: a client
runs ``epochs`` local epochs in each of ``rounds`` rounds)::

    >>> planned_steps(sample_rate=0.05, epochs=2, rounds=10)   # 20 steps an epoch
    400
"""

from __future__ import annotations

import math
from collections.abc import Callable

from secagg_rec.privacy.accountants import (
    DEFAULT_ACCOUNTANT,
    Accountant,
    _check_delta,
    get_accountant,
)
from secagg_rec.privacy.events import DPSGDEvent

__all__ = ["calibrate_noise", "planned_steps", "steps_per_epoch"]

_SIGMA_MIN = 0.1
_SIGMA_MAX = 1e4


def _check_sample_rate(sample_rate: object) -> float:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)):
        raise TypeError(f"sample_rate must be a real number, got {type(sample_rate).__name__}")
    q = float(sample_rate)
    if not 0 < q <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {q}")
    return q


def steps_per_epoch(sample_rate: float) -> int:
    """Optimizer steps in one epoch at sampling rate q: ``ceil(1/q)``.

    This matches :func:`~secagg_rec.privacy.make_private`, whose Poisson loader makes
    ``len(data_loader)`` = ``ceil(N/B)`` steps an epoch with ``q = B/N``.

    Raises:
        TypeError, ValueError: ``sample_rate`` not in ``(0, 1]``.
    """
    q = _check_sample_rate(sample_rate)
    # 1/q can land a hair above an integer (1/0.05 = 20.000000000000004).
    return max(1, math.ceil(1.0 / q - 1e-9))


def planned_steps(*, sample_rate: float, epochs: float, rounds: int = 1) -> int:
    """Total steps for ``epochs`` local epochs in each of ``rounds`` rounds.

    Each round runs ``ceil(epochs * steps_per_epoch(q))`` steps.

    Raises:
        TypeError: non-numeric ``epochs`` or non-int ``rounds``.
        ValueError: ``epochs <= 0`` or ``rounds < 1``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)):
        raise TypeError(f"epochs must be a number, got {type(epochs).__name__}")
    if not (math.isfinite(epochs) and epochs > 0):
        raise ValueError(f"epochs must be > 0, got {epochs}")
    if isinstance(rounds, bool) or not isinstance(rounds, int):
        raise TypeError(f"rounds must be an int, got {type(rounds).__name__}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    per_round = math.ceil(epochs * steps_per_epoch(sample_rate) - 1e-9)
    return rounds * max(1, per_round)


def calibrate_noise(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int | None = None,
    *,
    epochs: float | None = None,
    rounds: int = 1,
    accountant: str | Accountant = DEFAULT_ACCOUNTANT,
    rtol: float = 0.01,
) -> float:
    """Smallest noise multiplier σ (to within ``rtol`` in ε) meeting a target ε.

    Args:
        target_epsilon: ε to reach, finite and ``> 0``.
        delta: δ in ``(0, 1)``.
        sample_rate: q in ``(0, 1]`` (expected batch size / examples).
        steps: total optimizer steps T; give either this or ``epochs``.
        epochs: local epochs per round (``T = rounds * ceil(epochs * ceil(1/q))``).
        rounds: rounds of ``epochs`` each (default 1); only with ``epochs``.
        accountant: name or instance (default ``"pld"``).
        rtol: the returned σ gives ε in ``[(1 - rtol) * target, target]`` (default 0.01).

    Returns:
        σ in ``[0.1, 1e4]`` with ``epsilon(DPSGDEvent(σ, q, T), δ, accountant) <=
        target_epsilon``. If even σ = 0.1 meets the target (ε of tens to thousands:
        no meaningful protection), 0.1 is returned.

    Raises:
        TypeError, ValueError: bad arguments (before any search), or a target so small
            that σ = 1e4 does not reach it.

    Example::

        >>> sigma = calibrate_noise(1.0, 1e-5, sample_rate=0.01, steps=10_000)
        >>> 3.5 < sigma < 4.0
        True
    """
    if isinstance(target_epsilon, bool) or not isinstance(target_epsilon, (int, float)):
        raise TypeError(f"target_epsilon must be a number, got {type(target_epsilon).__name__}")
    target = float(target_epsilon)
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target_epsilon must be finite and > 0, got {target_epsilon}")
    delta = _check_delta(delta)
    q = _check_sample_rate(sample_rate)
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    if steps is not None:
        if rounds != 1:
            raise ValueError("rounds is only used with epochs; fold it into steps")
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise TypeError(f"steps must be an int, got {type(steps).__name__}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        total = steps
    else:
        assert epochs is not None
        total = planned_steps(sample_rate=q, epochs=epochs, rounds=rounds)
    if not 0 < rtol < 0.5:
        raise ValueError(f"rtol must be in (0, 0.5), got {rtol}")
    acc = get_accountant(accountant)

    def coarse(sigma: float) -> float:
        return acc.coarse_epsilon(DPSGDEvent(sigma, q, total), delta)

    def fine(sigma: float) -> float:
        return acc.epsilon(DPSGDEvent(sigma, q, total), delta)

    # A cheap upper bound first (it brackets σ from above: coarse ε >= fine ε), then the
    # accountant itself, started from there with the slope learnt on the way.
    sigma, slope = _search(coarse, target, rtol, start=1.0, slope=None)
    if sigma <= _SIGMA_MIN:
        return sigma
    sigma, _ = _search(fine, target, rtol, start=sigma, slope=slope)
    return sigma


def _log_eps(value: float) -> float:
    if value <= 0:
        return -math.inf
    return math.log(value) if math.isfinite(value) else math.inf


def _search(
    eps: Callable[[float], float],
    target: float,
    rtol: float,
    *,
    start: float,
    slope: float | None,
) -> tuple[float, float | None]:
    """Find σ with ``(1-rtol)·target <= eps(σ) <= target``; ε decreases in σ.

    Works on ``f(x) = log ε(e^x) - log target``, which is close to linear in x, with
    a safeguarded secant method aimed at the middle of the accepted band: each new
    point comes from the last two (or from ``start`` and ``slope`` = d log ε / d log σ
    when given), is kept inside the bracket once one is known, and falls back to
    bisection when the secant would not shrink it. Returns σ and the last slope.
    """
    log_t = math.log(target)
    x_min, x_max = math.log(_SIGMA_MIN), math.log(_SIGMA_MAX)
    aim = math.log(1.0 - rtol / 2.0)
    band_low = math.log(1.0 - rtol)

    def f(x: float) -> float:
        return _log_eps(eps(math.exp(x))) - log_t

    lo: tuple[float, float] | None = None  # f > 0: too little noise
    hi: tuple[float, float] | None = None  # f <= 0: meets the target
    prev: tuple[float, float] | None = None
    x = min(max(math.log(start), x_min), x_max)
    max_step = math.log(4.0)
    stalled = 0  # secant steps in a row that did not halve the bracket
    for _ in range(100):
        fx = f(x)
        if band_low <= fx <= 0.0:
            return math.exp(x), slope
        width = (hi[0] - lo[0]) if lo is not None and hi is not None else math.inf
        if fx > 0:
            if x >= x_max:
                raise ValueError(
                    f"target ε={target:g} is out of reach: σ={_SIGMA_MAX:g} still gives "
                    f"ε={math.exp(min(fx + log_t, 700)):.4g}"
                )
            if lo is None or x > lo[0]:
                lo = (x, fx)
        else:
            if x <= x_min:
                return _SIGMA_MIN, slope
            if hi is None or x < hi[0]:
                hi = (x, fx)
        if lo is not None and hi is not None:
            new_width = hi[0] - lo[0]
            stalled = stalled + 1 if new_width > 0.5 * width else 0
            if new_width < 1e-9:
                break
        if prev is not None and math.isfinite(fx) and math.isfinite(prev[1]) and x != prev[0]:
            s = (fx - prev[1]) / (x - prev[0])
            if s < 0:
                slope = s
        prev = (x, fx)
        if slope is not None and math.isfinite(fx):
            x_new = x + (aim - fx) / slope
            x_new = min(max(x_new, x - max_step), x + max_step)
        else:
            x_new = x + (max_step if fx > 0 else -max_step)
        # Secant inside the bracket; bisect when it leaves it or keeps stalling.
        if lo is not None and hi is not None and (not lo[0] < x_new < hi[0] or stalled >= 2):
            x_new = 0.5 * (lo[0] + hi[0])
            stalled = 0
        x = min(max(x_new, x_min), x_max)
    if hi is None:
        raise ValueError(f"could not find a noise multiplier for target ε={target:g}")
    return math.exp(hi[0]), slope
