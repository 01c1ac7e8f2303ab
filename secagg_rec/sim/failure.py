"""Monte Carlo estimate of how often a SecAgg+ round fails, against the (k, t) helper.

A round fails (aborts with ``ThresholdError``) when some secret the server must rebuild
has fewer than ``t`` live holders: a survivor ``u`` needs ``t`` of its holders (itself
and its ``k`` neighbours) alive to rebuild its self-mask seed, and a client ``v`` that
dropped after sharing keys, and has a surviving neighbour, needs ``t`` surviving
neighbours to rebuild its mask key. (Fewer than ``t`` survivors in all also aborts.)
This is exactly the check the server makes after the masked-input stage
(``protocols/secagg.md`` §4); :func:`round_recoverable` applies it to a real
:class:`~secagg_rec.secagg.graph.NeighborGraph`, and the tests check it against full
protocol runs.

The Monte Carlo runs no cryptography. The graph is the Harary ring of
:mod:`secagg_rec.secagg.graph` (each client joined to the ``k // 2`` nearest on either
side, plus the opposite one for odd ``k``); since dropouts are drawn uniformly at
random, independently of the graph's random relabelling, the ring can be taken in the
identity order. Per trial it draws the dropped clients (``"count"``: exactly
``floor(dropout * n)`` of them, the model :func:`~secagg_rec.secagg.params.choose_parameters`
plans for; ``"independent"``: each with probability ``dropout``), counts every
client's live neighbours with a circular window sum (O(n) per trial), and applies the
check above. All dropped clients are assumed to drop after sharing keys, the worst case.

It reports two rates, each with a 95% Clopper-Pearson interval:

* the **round failure rate**, to set against the helper's union bound
  ``min(1, n * P[S <= t - 1])`` (:func:`~secagg_rec.secagg.params.failure_probability`);
* the **per-client rate**: the fraction of dropped clients left with fewer than ``t``
  surviving neighbours, whose exact value under the model is ``P[S <= t - 1]``
  (``failure_probability(..., per_client=True)``). This one checks the helper's
  formula itself, not only its bound. Its interval uses the spread between trials
  (the clients of one round are correlated), not a binomial over clients.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import betaincinv

from secagg_rec.secagg.graph import NeighborGraph
from secagg_rec.secagg.params import failure_probability

__all__ = [
    "FailureEstimate",
    "failure_curve",
    "monte_carlo_failure",
    "round_recoverable",
]

DropoutModel = Literal["count", "independent"]

_SLACK = 1e-9  # same float slack as secagg_rec.secagg.params
_CELLS_PER_BATCH = 1 << 22  # trials x clients per numpy batch


@dataclass(frozen=True)
class FailureEstimate:
    """Monte Carlo failure rates of one (n, k, t, dropout), with the helper's numbers.

    Attributes:
        n, k, t, dropout, dropout_model: the setting.
        trials: rounds simulated.
        failures: rounds that would abort.
        rate, ci_low, ci_high: failures / trials and its 95% Clopper-Pearson interval.
        dropped_total: dropped clients over all trials.
        client_failures: dropped clients with fewer than ``t`` surviving neighbours.
        client_rate, client_ci_low, client_ci_high: their fraction and a 95% interval
            (normal, with the variance between trials, since clients of one round
            share neighbours; with no events, the Clopper-Pearson bound on "some
            dropped client is short").
        bound: the helper's union bound on the round failure probability.
        client_exact: the helper's exact per-client probability ``P[S <= t - 1]``.
    """

    n: int
    k: int
    t: int
    dropout: float
    dropout_model: str
    trials: int
    failures: int
    rate: float
    ci_low: float
    ci_high: float
    dropped_total: int
    client_failures: int
    client_rate: float
    client_ci_low: float
    client_ci_high: float
    bound: float
    client_exact: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval for ``successes / trials`` (``(0, 1)`` if no
    trials). Raises ValueError for counts out of range."""
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if trials == 0:
        return 0.0, 1.0
    a = (1 - level) / 2
    low = 0.0 if successes == 0 else float(betaincinv(successes, trials - successes + 1, a))
    high = 1.0 if successes == trials else float(
        betaincinv(successes + 1, trials - successes, 1 - a)
    )
    return low, high


def round_recoverable(
    graph: NeighborGraph, threshold: int, survivors: Iterable[int], dropped: Iterable[int]
) -> bool:
    """Whether the server can finish: the check of ``protocols/secagg.md`` §4.

    Args:
        graph: the round's neighbour graph.
        threshold: ``t``.
        survivors: clients whose masked input arrived (and who stay to the end).
        dropped: clients that shared keys but whose masked input never came.

    Returns:
        True iff there are at least ``t`` survivors, every survivor has ``t`` live
        holders (itself included) and every dropped client with a surviving neighbour
        has ``t`` surviving neighbours.
    """
    alive = frozenset(survivors)
    if len(alive) < threshold:
        return False
    for u in alive:
        if len(alive.intersection(graph.holders(u))) < threshold:
            return False
    for v in dropped:
        live = len(alive.intersection(graph.neighbors(v)))
        if 0 < live < threshold:
            return False
    return True


def _ring_live_neighbours(alive: np.ndarray, k: int) -> np.ndarray:
    """Live neighbours of every ring position, per row (``alive``: trials x n, 0/1)."""
    trials, n = alive.shape
    if k == n - 1:
        return np.broadcast_to(alive.sum(axis=1, keepdims=True), alive.shape) - alive
    half = k // 2
    a = alive.astype(np.int32)
    padded = np.concatenate([a[:, n - half :], a, a[:, :half]], axis=1)
    csum = np.concatenate([np.zeros((trials, 1), np.int32), np.cumsum(padded, axis=1)], axis=1)
    window = csum[:, 2 * half + 1 :] - csum[:, : n]  # positions p-half .. p+half
    live = window - a
    if k % 2:
        live = live + np.roll(a, -(n // 2), axis=1)
    return live


def _draw_alive(
    rng: np.random.Generator, trials: int, n: int, dropout: float, model: DropoutModel
) -> np.ndarray:
    if model == "independent":
        return rng.random((trials, n)) >= dropout
    drops = math.floor(dropout * n + _SLACK * n)
    if drops == 0:
        return np.ones((trials, n), dtype=bool)
    ranks = np.argsort(rng.random((trials, n)), axis=1)
    alive = np.ones((trials, n), dtype=bool)
    np.put_along_axis(alive, ranks[:, :drops], False, axis=1)
    return alive


def monte_carlo_failure(
    n: int,
    k: int,
    t: int,
    dropout: float,
    *,
    trials: int = 10_000,
    dropout_model: DropoutModel = "count",
    seed: int = 0,
) -> FailureEstimate:
    """Estimate how often a round with these parameters fails, by simulation.

    Args:
        n: clients, ``>= 2``.
        k: neighbours per client, ``1 <= k <= n - 1``; odd ``k`` needs even ``n``.
        t: threshold, ``1 <= t <= k + 1``.
        dropout: fraction in ``[0, 1)``.
        trials: simulated rounds, ``>= 1``.
        dropout_model: ``"count"`` or ``"independent"`` (module docstring).
        seed: seeds the draws.

    Returns:
        A :class:`FailureEstimate` (rates with 95% intervals, and the helper's bound
        and exact per-client probability for the same setting).

    Raises:
        ValueError: arguments out of range.
    """
    for name, value in (("n", n), ("k", k), ("t", t), ("trials", trials)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be in [1, {n - 1}], got {k}")
    if k % 2 and n % 2 and k != n - 1:
        raise ValueError(f"odd k={k} needs an even number of clients, got n={n}")
    if not 1 <= t <= k + 1:
        raise ValueError(f"t must be in [1, k + 1] = [1, {k + 1}], got {t}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if dropout_model not in ("count", "independent"):
        raise ValueError(f"dropout_model must be 'count' or 'independent', got {dropout_model!r}")
    rng = np.random.default_rng([seed, n, k, t, round(dropout * 1e9)])
    batch = max(1, _CELLS_PER_BATCH // n)
    failures = dropped_total = client_failures = trials_with_short = 0
    # per-trial sums for a cluster-robust interval on the per-client rate: clients of
    # one round share neighbours, so their failures are correlated
    sum_f = sum_ff = sum_d = sum_dd = sum_fd = 0.0
    done = 0
    while done < trials:
        b = min(batch, trials - done)
        alive = _draw_alive(rng, b, n, float(dropout), dropout_model)
        live = _ring_live_neighbours(alive, k)
        survivors = alive.sum(axis=1)
        survivor_short = (alive & (live + 1 < t)).any(axis=1)
        dead = ~alive
        dead_short = dead & (live < t)
        dropped_short = (dead_short & (live > 0)).any(axis=1)
        fails = (survivors < t) | survivor_short | dropped_short
        failures += int(fails.sum())
        f_i = dead_short.sum(axis=1).astype(np.float64)
        d_i = dead.sum(axis=1).astype(np.float64)
        dropped_total += int(d_i.sum())
        client_failures += int(f_i.sum())
        trials_with_short += int((f_i > 0).sum())
        sum_f += float(f_i.sum())
        sum_ff += float((f_i * f_i).sum())
        sum_d += float(d_i.sum())
        sum_dd += float((d_i * d_i).sum())
        sum_fd += float((f_i * d_i).sum())
        done += b
    lo, hi = clopper_pearson(failures, trials)
    client_rate = client_failures / dropped_total if dropped_total else 0.0
    if client_failures == 0 or trials < 2:
        # no events (or one trial): P[a given dropped client is short] is at most
        # P[some dropped client is short], bounded over the independent trials
        clo, chi = 0.0, clopper_pearson(trials_with_short, trials)[1]
    else:
        # ratio estimator with between-trial variance (cluster-robust), normal 95%
        resid = sum_ff - 2 * client_rate * sum_fd + client_rate**2 * sum_dd
        mean_d = sum_d / trials
        se = math.sqrt(max(resid, 0.0) / (trials * (trials - 1))) / mean_d
        clo, chi = max(0.0, client_rate - 1.96 * se), min(1.0, client_rate + 1.96 * se)
    return FailureEstimate(
        n=n,
        k=k,
        t=t,
        dropout=float(dropout),
        dropout_model=dropout_model,
        trials=trials,
        failures=failures,
        rate=failures / trials,
        ci_low=lo,
        ci_high=hi,
        dropped_total=dropped_total,
        client_failures=client_failures,
        client_rate=client_rate,
        client_ci_low=clo,
        client_ci_high=chi,
        bound=failure_probability(n, k, t, float(dropout), dropout_model=dropout_model),
        client_exact=failure_probability(
            n, k, t, float(dropout), dropout_model=dropout_model, per_client=True
        ),
    )


def failure_curve(
    n: int,
    k: int,
    t: int,
    dropouts: Sequence[float],
    *,
    trials: int = 2_000,
    dropout_model: DropoutModel = "count",
    seed: int = 0,
) -> list[FailureEstimate]:
    """:func:`monte_carlo_failure` at each dropout rate (same arguments otherwise)."""
    return [
        monte_carlo_failure(
            n, k, t, d, trials=trials, dropout_model=dropout_model, seed=seed
        )
        for d in dropouts
    ]
