"""Choose SecAgg+ parameters (k neighbours, threshold t) from n, dropout and corruption.

SecAgg+ (Bell, Bonawitz, Gascón, Lepoint, Raykova, "Secure Single-Server Aggregation
with (Poly)Logarithmic Overhead", CCS 2020, eprint 2020/704) replaces the complete
graph of SecAgg (Bonawitz et al., CCS 2017) with a sparse random ``k``-regular graph.
This module computes, from first principles, the smallest ``k`` (and a threshold
``t``) such that a round is correct and secure except with stated probabilities.

Conventions
-----------
* ``n`` clients; each has exactly ``k`` neighbours (not counting itself). Its two
  secrets are Shamir-shared among its ``k`` neighbours **and itself** (``k + 1``
  holders; it keeps one share), and ``t`` counts holders: any ``t`` of the ``k + 1``
  reconstruct. Google's production code (below) uses the same numbers: its
  ``SecretSharingHararyGraph`` has degree ``k + 1`` because of a self-edge, and the
  parameter finder's ``number_of_neighbors`` is our ``k`` (``degree = k + 1`` is set
  by the caller in ``secagg_server.cc``).
* The graph is the Harary graph ``H(k, n)`` (clients on a ring, each joined to the
  ``k/2`` nearest on either side) under a uniformly random relabelling of the
  clients, as in :mod:`secagg_rec.secagg.graph`. ``k`` is even; ``k = n - 1`` is the
  complete graph (classic SecAgg).
* ``corrupt`` and ``dropout`` are fractions of the ``n`` clients. The analysis
  assumes at most ``A = floor(corrupt * n)`` corrupt clients (fixed before the graph
  is drawn) and at most ``D = floor(dropout * n)`` dropouts, placed uniformly at
  random with respect to the graph (a tiny slack, ``1e-9 * n``, absorbs float error,
  as Google's code does with ``1e-14``).

The bounds (``sigma = security_bits``, ``eta = failure_bits``)
---------------------------------------------------------------
Let ``HG(N, K, k)`` be the hypergeometric law of the number of marked items in a
uniform ``k``-subset of ``N`` items of which ``K`` are marked.

1. **Correctness** (every secret that the server must rebuild keeps ``t`` live
   holders). A dropped client's neighbours are a
   uniform ``k``-subset of the other ``n - 1`` clients, ``n - D`` of whom survive, so
   its surviving holders are ``S ~ HG(n - 1, n - D, k)``; a surviving client has
   ``1 + HG(n - 1, n - D - 1, k)``, which is stochastically larger. Union bound over
   the ``n`` clients::

       P[round fails] <= n * P[S <= t - 1]  <  2**-eta            (gives t <= t_max)

   (:func:`failure_probability`; with ``k = n - 1`` it is exactly 0 or 1.)
2. **Too many corrupt holders.** An honest client's neighbours hold ``X ~ HG(n - 1, A,
   k)`` corrupt clients; the adversary (server + corrupt clients) must not hold ``t``
   shares of either secret::

       n * P[X >= t]  <  2**-(sigma + 1)                          (gives t >= t_min)

3. **The honest survivors stay connected** (with a sparse graph the server can learn
   the sum of each connected component of honest surviving clients, so there must be
   one component). Removing vertices disconnects ``H(k, n)`` only if two disjoint runs of
   ``k/2`` consecutive ring positions are all removed (between two consecutive
   remaining vertices a gap of fewer than ``k/2`` removed vertices keeps them
   adjacent, and a ring with one break is still a path). There are at most
   ``n (n - k - 1) / 2`` such pairs of runs, and ``k`` given positions are all among
   the ``B = A + D`` bad clients with probability ``B! (n - k)! / ((B - k)! n!)``::

       n (n - k - 1) / 2 * B! (n - k)! / ((B - k)! n!)  <  2**-(sigma + 1)

   (zero when ``k > B``). Events 2 and 3 each get half of the ``2**-sigma`` budget.
4. **Semi-malicious server** (``adversary="semi-malicious"``: Bell et al.'s
   semi-malicious setting). The
   server may tell some honest holders that client ``u`` dropped (they reveal a share
   of its mask key) and others that it survived (they reveal a share of its self-mask
   seed). With ``X`` corrupt neighbours, ``k - X`` honest neighbours (one share each)
   and ``u`` itself (only ever its own seed share), the server gets ``t`` of both
   only if ``2t <= k + X + 1``. With ``X <= t_min - 1`` (event 2) it is safe when
   ``t >= floor((k + t_min) / 2) + 1``. For the complete graph this is
   ``t > (n + A) / 2``, the condition Google's code checks for full SecAgg
   (``CheckFullGraphParameters``).

Search: for even ``k = 2, 4, ...`` (the first ``k`` that passes is returned, like
Google's finder; from ``k = 8192`` on, by doubling then bisection plus a local scan),
check 3, compute ``t_min`` from 2 (and 4), ``t_max`` from 1, and accept if ``t =
max(t_min, 2) <= t_max``. ``t >= 2`` always: with ``t = 1`` every holder would get the
secret itself. If no ``k <= n - 2`` passes, the complete graph ``k = n - 1`` is used:
there every honest client has exactly ``A`` corrupt holders and every secret ``n - D``
live ones, so ``t = max(A + 1, 2)`` (semi-honest) or ``floor((n + A) / 2) + 1``
(semi-malicious) works, deterministically, iff ``t <= n - D``. SecAgg+ with
``k < n - 1`` never costs a client more than SecAgg (cost is linear in neighbours),
so the complete graph is chosen only when nothing sparser meets the targets.

Where the formulas come from
----------------------------
Conditions 1-4 are the correctness and security conditions of Bell et al.'s SecAgg+
(correct when every needed secret keeps ``t`` live holders; secure when the adversary
never holds ``t`` shares of an honest client's secret and the honest survivors are
connected), instantiated for a random Harary graph. The concrete bounds
(hypergeometric tails, union bound over clients, the ``n (n - k - 1) / 2`` gap-pair
count, the split of the security budget into two halves, the semi-malicious
``2t > k + X`` rule and ``t >= 2``) are those of Google's production parameter
finder, ``fcp/secagg/server/graph_parameter_finder.cc`` in
google-parfait/federated-compute, re-derived here (no code copied). Its published
outputs at ``sigma = 40, eta = 20``, 5% corrupt, 33% dropout, semi-honest server:
``n = 1000 -> k = 72, t = 24`` and ``n = 10**4 -> k = 86, t = 29``; this module
reproduces both exactly.

Differences from Google's finder (``model="exact"``, the default):

* Google draws neighbours from a population of ``n``: corrupt neighbours
  ``HG(n, A, k)``, surviving neighbours ``HG(n, n - D, k)``. The exact populations are
  the other ``n - 1`` clients: an honest client's others contain all ``A`` corrupt
  clients (Google slightly *understates* that tail), and a dropped client's others
  contain all ``n - D`` survivors (Google's choice is conservative there). At the
  published settings both give the same ``(k, t)`` (checked for n = 10**2 .. 10**6);
  over the rest of Google's test table the semi-honest ``k`` differs by -4 .. +2.
* In the semi-malicious case Google requires ``2t > k + X``; we add the client's own
  seed share (``2t > k + X + 1``), since our clients keep and reveal it. Together
  with the populations, the semi-malicious ``k`` differs by -2 .. +16 over Google's
  table (the large increases at n >= 10**5: +16 at 30%/30%, +10 at 5%/33%).
* Google returns ``t = max(t_min, 2)`` after checking only ``t_min <= t_max``; for
  tiny ``n`` that can exceed ``t_max``: n = 10, 5% corrupt, 33% dropout gives ``k = 4,
  t = 2`` there although, in its own model (``S ~ HG(10, 7, 4)``), a client keeps a
  single live neighbour with probability 1/30. We check ``t <= t_max``. (The exact
  model also answers ``k = 4, t = 2`` for that case, correctly: a dropped client has
  only 2 other dropped clients, so at least 2 of its 4 neighbours survive.)

``model="fcp"`` uses Google's populations and semi-malicious rule (keeping the fix of
the last point), and reproduces every entry of Google's test table
(``graph_parameter_finder_test.cc``, n = 10 .. 10**6) except the two n = 10 cases of
that point, where it answers ``k = 6``.

Worked example (:func:`failure_probability`, by hand)
-----------------------------------------------------
``n = 5``, ``k = 2``, ``t = 2``, ``dropout = 0.4`` (``D = 2``). A dropped client's two
neighbours come from the other 4 clients, of whom 3 survive: ``P[S <= 1] = 1 -
P[S = 2] = 1 - C(3, 2) / C(4, 2) = 1 - 3/6 = 1/2``; the union bound is ``5 * 1/2``,
capped at 1. With ``t = 1``: ``P[S = 0] = C(1, 2)/C(4, 2) = 0`` (only one other
client dropped), so the round never fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import gammaln

__all__ = [
    "SecAggPlusParameters",
    "choose_parameters",
    "disconnection_probability",
    "failure_probability",
    "security_probability",
]

Adversary = Literal["semi-honest", "semi-malicious"]
Model = Literal["exact", "fcp"]
DropoutModel = Literal["count", "independent"]

_LN2 = math.log(2.0)
_SLACK = 1e-9
# Linear scan over even k up to here; beyond, doubling + bisection + local scan.
_LINEAR_SCAN_MAX_K = 8192
_LOCAL_SCAN = 64


# ----------------------------------------------------------------- result type


@dataclass(frozen=True)
class SecAggPlusParameters:
    """SecAgg+ parameters and the bounds they achieve.

    Attributes:
        n: number of clients in the round.
        k: neighbours per client, not counting itself (even, or ``n - 1`` for the
            complete graph, i.e. classic SecAgg).
        t: Shamir threshold, counted among the ``k + 1`` holders (neighbours + self).
        dropout: the dropout fraction planned for (at most ``floor(dropout * n)``).
        corrupt: the corrupt-client fraction tolerated (at most ``floor(corrupt * n)``).
        adversary: ``"semi-honest"`` or ``"semi-malicious"`` server.
        security_bits: the target: security fails with probability <= 2**-security_bits.
        failure_bits: the target: the round fails with probability <= 2**-failure_bits.
        security_log2_prob: log2 of the achieved bound on the probability that
            security fails (events 2 + 3 of the module docstring); ``-inf`` when it
            cannot happen (complete graph).
        failure_log2_prob: log2 of the achieved bound on the probability that the
            round fails (event 1); ``-inf`` when it cannot happen.
        model: ``"exact"`` or ``"fcp"`` (see the module docstring).
    """

    n: int
    k: int
    t: int
    dropout: float
    corrupt: float
    adversary: str
    security_bits: float
    failure_bits: float
    security_log2_prob: float
    failure_log2_prob: float
    model: str = "exact"

    @property
    def full(self) -> bool:
        """True when ``k = n - 1``: the complete graph of classic SecAgg."""
        return self.k == self.n - 1

    @property
    def holders(self) -> int:
        """Shares per secret: ``k + 1`` (the neighbours and the client itself)."""
        return self.k + 1

    @property
    def max_corrupt(self) -> int:
        """``A = floor(corrupt * n)``, the corrupt clients planned for."""
        return _count(self.corrupt, self.n)

    @property
    def max_dropouts(self) -> int:
        """``D = floor(dropout * n)``, the dropouts planned for."""
        return _count(self.dropout, self.n)

    def explain(self) -> str:
        """A few lines saying which bound was used and what it gives."""
        n, k, t, a, d = self.n, self.k, self.t, self.max_corrupt, self.max_dropouts
        lines = [
            f"SecAgg{'' if self.full else '+'} for n={n}: each client shares with k={k} "
            f"neighbours + itself ({k + 1} holders), threshold t={t}.",
            f"Planned for at most A={a} corrupt clients ({self.corrupt:g} of n) and "
            f"D={d} dropouts ({self.dropout:g} of n), {self.adversary} server.",
        ]
        if self.full:
            rule = "t > A" if self.adversary == "semi-honest" else "2t > n + A"
            lines.append(
                f"Complete graph: deterministic. Every honest client has exactly A={a} "
                f"corrupt holders ({rule}, t >= 2) and every secret n-D={n - d} live "
                f"holders (t <= n-D): security and correctness never fail."
            )
        else:
            lines += [
                f"Graph: Harary H(k={k}, n={n}) under a uniformly random relabelling.",
                "Correctness: n * P[HG(N, n-D, k) <= t-1] "
                f"= 2^{self.failure_log2_prob:.1f} (target 2^-{self.failure_bits:g}), "
                f"N = {'n-1' if self.model == 'exact' else 'n'}.",
                "Security: P[honest survivors disconnected] + n * P[HG(N, A, k) >= t] "
                f"= 2^{self.security_log2_prob:.1f} (target 2^-{self.security_bits:g}).",
            ]
            if self.adversary == "semi-malicious":
                lines.append(
                    "Semi-malicious server: t is also above (k + X + 1) / 2 for the "
                    "largest plausible number X of corrupt neighbours, so the server "
                    "never gets t shares of both secrets of an honest client."
                )
        lines.append(
            "Bounds: Bell et al. CCS 2020 conditions, concrete form as in Google's "
            "fcp/secagg/server/graph_parameter_finder.cc (see secagg_rec.secagg.params)."
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return (
            f"SecAggPlusParameters(n={self.n}, k={self.k}, t={self.t}, "
            f"security<=2^{self.security_log2_prob:.1f}, "
            f"failure<=2^{self.failure_log2_prob:.1f}, {self.adversary})"
        )


# ------------------------------------------------------------- small helpers


def _count(fraction: float, n: int) -> int:
    return math.floor(fraction * n + _SLACK * n)


def _check_n(n: object) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 2:
        raise ValueError(f"n must be >= 2 clients, got {n}")
    return int(n)


def _check_fraction(name: str, value: object) -> float:
    if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def _check_bits(name: str, value: object) -> float:
    if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number of bits, got {value}")
    return value


def _log2(p: float) -> float:
    return math.log2(p) if p > 0 else -math.inf


def _log_comb(a: float, b: np.ndarray | float) -> np.ndarray:
    return gammaln(a + 1.0) - gammaln(np.asarray(b) + 1.0) - gammaln(a - np.asarray(b) + 1.0)


def _log_hg_pmf(x: np.ndarray, big_n: int, big_k: int, k: int) -> np.ndarray:
    """log P[HG(N, K, k) = x] for integer x in the support (natural log)."""
    x = np.asarray(x, dtype=np.float64)
    return _log_comb(big_k, x) + _log_comb(big_n - big_k, k - x) - _log_comb(big_n, k)


def _support(big_n: int, big_k: int, k: int) -> tuple[int, int]:
    return max(0, k - (big_n - big_k)), min(k, big_k)


def _log_sum_exp(values: np.ndarray) -> float:
    if values.size == 0:
        return -math.inf
    top = float(values.max())
    if top == -math.inf:
        return -math.inf
    return top + math.log(float(np.exp(values - top).sum()))


def _log_hg_upper_tail(big_n: int, big_k: int, k: int, x: int) -> float:
    """Natural log of P[HG(N, K, k) >= x], summed exactly over the support."""
    lo, hi = _support(big_n, big_k, k)
    if x <= lo:
        return 0.0
    if x > hi:
        return -math.inf
    xs = np.arange(x, hi + 1)
    return min(0.0, _log_sum_exp(_log_hg_pmf(xs, big_n, big_k, k)))


def _hg_upper_quantile(big_n: int, big_k: int, k: int, log_eps: float) -> int:
    """Smallest u with P[HG(N, K, k) >= u] < eps (``log_eps`` = ln eps < ln 1/2).

    Only a window above the mean is summed: by Hoeffding's inequality (which holds for
    sampling without replacement), P[X >= mean + s] <= exp(-2 s**2 / k), so past
    ``s0 = sqrt(k (ln(1/eps) + 60 ln 2) / 2)`` the rest of the tail is below
    ``eps * 2**-60``; that remainder is *added* as a bound, so the answer is never too
    small (never unsafe) and at most one too large in a ``2**-60`` corner case.
    """
    lo, hi = _support(big_n, big_k, k)
    mean = k * big_k / big_n
    budget = -log_eps + 60 * _LN2
    s0 = math.sqrt(k * budget / 2.0)
    start = max(lo, math.floor(mean))
    stop = min(hi, math.ceil(mean + s0))
    # Hoeffding bound on P[X >= stop + 1] (nothing is left when stop is the top).
    log_rest = -2.0 * (stop + 1 - mean) ** 2 / k if stop < hi else -math.inf
    while True:
        xs = np.arange(start, stop + 1)
        logs = _log_hg_pmf(xs, big_n, big_k, k)
        tails = np.logaddexp.accumulate(logs[::-1])[::-1]  # P[start<=..], by x
        tails = np.logaddexp(tails, log_rest)
        below = np.nonzero(tails < log_eps)[0]
        if below.size and below[0] == 0 and start > lo:
            # The mean itself is already in the tail (tiny k or huge eps): widen.
            start = lo
            continue
        return int(xs[below[0]]) if below.size else stop + 1


def _log_disconnection(n: int, k: int, bad: int) -> float:
    """Natural log of the union bound on H(k, n) minus ``bad`` random vertices
    being disconnected (module docstring, event 3). ``k`` even, ``2 <= k <= n - 2``."""
    if k > bad:
        return -math.inf
    return (
        math.log(n)
        + math.log(n - k - 1)
        - _LN2
        + math.lgamma(bad + 1)
        + math.lgamma(n - k + 1)
        - math.lgamma(n + 1)
        - math.lgamma(bad - k + 1)
    )


# -------------------------------------------------------------- public bounds


def failure_probability(
    n: int,
    k: int,
    t: int,
    dropout: float,
    *,
    dropout_model: DropoutModel = "count",
    per_client: bool = False,
    log2: bool = False,
) -> float:
    """The bound on the probability that a round fails for lack of live holders.

    A round fails when some secret the server must rebuild (the mask key of a dropped
    client, the seed of a survivor) has fewer than ``t`` live holders. The worst case
    is a dropped client, whose live holders are its surviving neighbours ``S``.

    Args:
        n: clients (>= 2).
        k: neighbours per client, excluding itself, ``1 <= k <= n - 1``.
        t: threshold counted among the ``k + 1`` holders, ``t >= 1``.
        dropout: fraction in [0, 1).
        dropout_model: ``"count"`` (default; the one :func:`choose_parameters` uses):
            exactly ``D = floor(dropout * n)`` clients drop, uniformly at random, and
            ``S ~ HG(n - 1, n - D, k)``. ``"independent"``: each client drops
            independently with probability ``dropout``, ``S ~ Binomial(k, 1 - dropout)``.
        per_client: return ``P[S <= t - 1]`` for one dropped client (exact under the
            model, the number to compare with a Monte Carlo estimate of how often a
            given dropped client cannot be recovered) instead of the union bound
            ``min(1, n * P[S <= t - 1])`` over the round.
        log2: return ``log2`` of the probability (``-inf`` for 0).

    Returns:
        A probability in [0, 1] (or its log2). Example (module docstring): ``n=5, k=2,
        t=2, dropout=0.4`` gives ``P[S <= 1] = 1/2`` per client, union bound 1.

    Raises:
        TypeError / ValueError: arguments out of range.
    """
    n = _check_n(n)
    dropout = _check_fraction("dropout", dropout)
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
        raise ValueError(f"k must be an int in [1, n-1] = [1, {n - 1}], got {k!r}")
    if not isinstance(t, (int, np.integer)) or t < 1:
        raise ValueError(f"t must be an int >= 1, got {t!r}")
    k, t = int(k), int(t)
    if dropout_model == "count":
        drops = _count(dropout, n)
        if drops == 0:  # nobody drops: every secret keeps all k + 1 holders
            log_p = 0.0 if t > k + 1 else -math.inf
        else:
            # A dropped client's other n - 1 clients include D - 1 dropped ones, so
            # its dropped neighbours Y ~ HG(n - 1, D - 1, k), S = k - Y, and
            # S <= t - 1  <=>  Y >= k - t + 1.
            log_p = _log_hg_upper_tail(n - 1, drops - 1, k, k - t + 1)
    elif dropout_model == "independent":
        if t - 1 >= k:
            log_p = 0.0
        elif dropout == 0.0:
            log_p = -math.inf
        else:
            s = np.arange(0, t)
            log_pmf = _log_comb(k, s) + s * math.log1p(-dropout) + (k - s) * math.log(dropout)
            log_p = min(0.0, _log_sum_exp(log_pmf))
    else:
        raise ValueError(f"dropout_model must be 'count' or 'independent', got {dropout_model!r}")
    if not per_client:
        log_p = min(0.0, log_p + math.log(n))
    if log2:
        return log_p / _LN2 if log_p > -math.inf else -math.inf
    return math.exp(log_p)


def disconnection_probability(n: int, k: int, corrupt: float, dropout: float) -> float:
    """Union bound on the honest surviving clients being disconnected (event 3).

    For the Harary graph ``H(k, n)`` (``k`` even, ``2 <= k <= n - 2``) under a random
    relabelling, with ``B = floor(corrupt n) + floor(dropout n)`` bad clients:
    ``min(1, n (n - k - 1) / 2 * B! (n - k)! / ((B - k)! n!))``, 0 if ``k > B``.
    ``k = n - 1`` (complete graph) gives 0.

    Example: n = 10, k = 2, B = 3: ``10 * 7 / 2 * (3 * 2) / (10 * 9) = 35 / 15``,
    capped at 1; n = 10, k = 4, B = 3: 0.

    Raises:
        ValueError: ``k`` odd and below ``n - 1``, or out of range; bad fractions.
    """
    n = _check_n(n)
    corrupt = _check_fraction("corrupt", corrupt)
    dropout = _check_fraction("dropout", dropout)
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
        raise ValueError(f"k must be an int in [1, {n - 1}], got {k!r}")
    if k == n - 1:
        return 0.0
    if k % 2:
        raise ValueError(f"the Harary bound needs an even k below n - 1, got k={k}")
    log_p = _log_disconnection(n, int(k), _count(corrupt, n) + _count(dropout, n))
    return math.exp(min(0.0, log_p))


def security_probability(
    n: int,
    k: int,
    t: int,
    corrupt: float,
    dropout: float,
    *,
    adversary: Adversary = "semi-honest",
    model: Model = "exact",
    log2: bool = False,
) -> float:
    """The bound on the probability that security fails (events 2 + 3, and 4).

    ``P[disconnected] + n * P[X >= t_eff]`` where ``X ~ HG(n - 1, A, k)`` (``HG(n, A,
    k)`` for ``model="fcp"``) counts an honest client's corrupt neighbours and
    ``t_eff = t`` for a semi-honest server; for a semi-malicious one the server wins
    if ``X >= t`` or ``2t <= k + X + 1``, so ``t_eff = min(t, 2t - k - 1)``. On the
    complete graph (``k = n - 1``) the result is exactly 0 or 1.

    Returns:
        A probability in [0, 1], or its log2 if ``log2``.

    Raises:
        TypeError / ValueError: arguments out of range.
    """
    n = _check_n(n)
    corrupt = _check_fraction("corrupt", corrupt)
    dropout = _check_fraction("dropout", dropout)
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
        raise ValueError(f"k must be an int in [1, {n - 1}], got {k!r}")
    if not isinstance(t, (int, np.integer)) or t < 1:
        raise ValueError(f"t must be an int >= 1, got {t!r}")
    k, t = int(k), int(t)
    if adversary == "semi-honest":
        t_eff = t
    elif adversary == "semi-malicious":
        t_eff = min(t, 2 * t - k - (1 if model == "exact" else 0))
    else:
        raise ValueError(f"adversary must be 'semi-honest' or 'semi-malicious', got {adversary!r}")
    if model not in ("exact", "fcp"):
        raise ValueError(f"model must be 'exact' or 'fcp', got {model!r}")
    corrupt_count = _count(corrupt, n)
    population = n - 1 if (model == "exact" or k == n - 1) else n
    log_x = _log_hg_upper_tail(population, corrupt_count, k, t_eff) + math.log(n)
    if k == n - 1:
        log_x = 0.0 if log_x > -math.inf else -math.inf  # deterministic
        log_p = log_x
    else:
        if k % 2:
            raise ValueError(f"the Harary bound needs an even k below n - 1, got k={k}")
        log_d = _log_disconnection(n, k, corrupt_count + _count(dropout, n))
        log_p = min(0.0, float(np.logaddexp(log_x, log_d)))
    if log2:
        return log_p / _LN2 if log_p > -math.inf else -math.inf
    return math.exp(log_p)


# -------------------------------------------------------------------- search


def choose_parameters(
    n: int,
    *,
    dropout: float,
    corrupt: float,
    security_bits: float = 40,
    failure_bits: float = 20,
    adversary: Adversary = "semi-honest",
    model: Model = "exact",
) -> SecAggPlusParameters:
    """The smallest even ``k`` (and its threshold ``t``) meeting both targets.

    Args:
        n: clients in the round (>= 2).
        dropout: fraction of clients that may drop out, in [0, 1).
        corrupt: fraction of clients that may collude with the server, in [0, 1).
        security_bits: ``sigma``: the server and corrupt clients learn more than the
            sum of the honest survivors' inputs with probability <= 2**-sigma.
        failure_bits: ``eta``: the round aborts for lack of live holders with
            probability <= 2**-eta.
        adversary: ``"semi-honest"`` (the server follows the protocol; Google's
            published figures) or ``"semi-malicious"`` (it may lie about who dropped).
        model: ``"exact"`` (default) or ``"fcp"`` (Google's populations; see the
            module docstring).

    Returns:
        :class:`SecAggPlusParameters`; ``k = n - 1`` (complete graph, deterministic
        guarantees) when no ``k <= n - 2`` meets the targets. Published check: ``n =
        1000`` and ``n = 10**4`` at 33% dropout, 5% corrupt give ``(72, 24)`` and
        ``(86, 29)``.

    Raises:
        TypeError: non-numeric arguments.
        ValueError: fractions outside [0, 1), non-positive bits, or impossible targets:
            ``corrupt + dropout >= 1`` (``corrupt + 2 * dropout >= 1`` for a
            semi-malicious server), or too few clients for even the complete graph;
            the message says what would work.
    """
    n = _check_n(n)
    dropout = _check_fraction("dropout", dropout)
    corrupt = _check_fraction("corrupt", corrupt)
    security_bits = _check_bits("security_bits", security_bits)
    failure_bits = _check_bits("failure_bits", failure_bits)
    if adversary not in ("semi-honest", "semi-malicious"):
        raise ValueError(f"adversary must be 'semi-honest' or 'semi-malicious', got {adversary!r}")
    if model not in ("exact", "fcp"):
        raise ValueError(f"model must be 'exact' or 'fcp', got {model!r}")
    if adversary == "semi-honest" and corrupt + dropout >= 1:
        raise ValueError(
            f"corrupt + dropout = {corrupt + dropout:g} >= 1: no threshold can be both "
            f"above the corrupt holders and below the live ones; need corrupt + dropout < 1"
        )
    if adversary == "semi-malicious" and corrupt + 2 * dropout >= 1:
        raise ValueError(
            f"corrupt + 2*dropout = {corrupt + 2 * dropout:g} >= 1: against a "
            f"semi-malicious server need 2t > holders + corrupt holders while t <= live "
            f"holders, i.e. corrupt + 2*dropout < 1 (or use adversary='semi-honest')"
        )

    corrupt_count, drops = _count(corrupt, n), _count(dropout, n)
    log_eps_sec = -(security_bits + 1) * _LN2 - math.log(n)
    log_eps_fail = -failure_bits * _LN2 - math.log(n)
    log_eps_disc = -(security_bits + 1) * _LN2

    population = n - 1 if model == "exact" else n

    def threshold(k: int) -> int | None:
        """The threshold for even degree k, or None if no t meets both targets."""
        if _log_disconnection(n, k, corrupt_count + drops) >= log_eps_disc:
            return None
        t_min = _hg_upper_quantile(population, corrupt_count, k, log_eps_sec)
        if drops == 0:
            t_max = k + 1
        elif model == "exact":  # dropped neighbours of a dropped client: HG(n-1, D-1, k)
            t_max = k + 1 - _hg_upper_quantile(n - 1, drops - 1, k, log_eps_fail)
        else:  # Google's finder: HG(n, D, k)
            t_max = k + 1 - _hg_upper_quantile(n, drops, k, log_eps_fail)
        if adversary == "semi-malicious":
            t_min = (k + t_min) // 2 + 1 if model == "exact" else (k + t_min - 1) // 2 + 1
        t = max(t_min, 2)
        return t if t <= t_max else None

    found = _search_smallest_k(n, threshold)
    if found is not None:
        k, t = found
        return _result(n, k, t, dropout, corrupt, adversary, security_bits, failure_bits, model)

    # Complete graph: deterministic conditions.
    k = n - 1
    if adversary == "semi-honest":
        t = max(corrupt_count + 1, 2)
    else:
        t = max((n + corrupt_count) // 2 + 1, 2)
    if t > n - drops:
        raise ValueError(
            f"no parameters for n={n}: even the complete graph needs t={t} (> "
            f"{corrupt_count} corrupt{'' if adversary == 'semi-honest' else ' and > (n + A)/2'}"
            f", and >= 2) but only n - D = {n - drops} clients survive {drops} dropouts; "
            f"allow at most {n - t} dropouts (dropout < {(n - t + 1) / n:.3g}), "
            f"fewer corrupt clients, or more clients"
        )
    return _result(n, k, t, dropout, corrupt, adversary, security_bits, failure_bits, model)


def _search_smallest_k(n: int, threshold: Callable[[int], int | None]) -> tuple[int, int] | None:
    """Smallest even k in [2, n - 2] with ``threshold(k)`` not None (see module doc)."""
    top = n - 2 if n % 2 == 0 else n - 3
    if top < 2:
        return None
    # 1. Linear scan, as Google's finder does.
    for k in range(2, min(top, _LINEAR_SCAN_MAX_K) + 1, 2):
        t = threshold(k)
        if t is not None:
            return k, t
    if top <= _LINEAR_SCAN_MAX_K:
        return None
    # 2. Doubling: find a feasible probe; feasibility is monotone in k up to the
    #    +-1 jitter of integer quantiles near the boundary.
    low = _LINEAR_SCAN_MAX_K  # known infeasible
    probe = low
    while True:
        probe = min(2 * probe, top)
        if threshold(probe) is not None:
            break
        if probe == top:
            return None
        low = probe
    # 3. Bisection on even k in (low, probe], then a local scan below the boundary.
    high = probe
    while high - low > 2:
        mid = (low + high) // 2
        mid -= mid % 2
        if mid <= low:
            break
        if threshold(mid) is not None:
            high = mid
        else:
            low = mid
    best = high
    for k in range(high - 2, max(_LINEAR_SCAN_MAX_K, high - 2 * _LOCAL_SCAN), -2):
        if threshold(k) is not None:
            best = k
    t = threshold(best)
    assert t is not None
    return best, t


def _result(
    n: int,
    k: int,
    t: int,
    dropout: float,
    corrupt: float,
    adversary: str,
    security_bits: float,
    failure_bits: float,
    model: str,
) -> SecAggPlusParameters:
    if k == n - 1:
        sec = fail = -math.inf
    else:
        sec = security_probability(
            n,
            k,
            t,
            corrupt,
            dropout,
            adversary=adversary,
            model=model,
            log2=True,  # type: ignore[arg-type]
        )
        fail = _failure_log2(n, k, t, dropout, model)
    return SecAggPlusParameters(
        n=n,
        k=k,
        t=t,
        dropout=dropout,
        corrupt=corrupt,
        adversary=adversary,
        security_bits=security_bits,
        failure_bits=failure_bits,
        security_log2_prob=sec,
        failure_log2_prob=fail,
        model=model,
    )


def _failure_log2(n: int, k: int, t: int, dropout: float, model: str) -> float:
    if model == "exact":
        return failure_probability(n, k, t, dropout, log2=True)
    drops = _count(dropout, n)
    log_p = min(0.0, _log_hg_upper_tail(n, drops, k, k - t + 1) + math.log(n))
    return log_p / _LN2 if log_p > -math.inf else -math.inf
