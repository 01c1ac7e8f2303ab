"""Monte Carlo failure analysis: the predicate is the protocol's, the rates match the helper."""

from __future__ import annotations

import numpy as np
import pytest

from secagg_rec.secagg import run_round
from secagg_rec.secagg.graph import NeighborGraph
from secagg_rec.secagg.params import failure_probability
from secagg_rec.sim.failure import (
    _ring_live_neighbours,
    clopper_pearson,
    failure_curve,
    monte_carlo_failure,
    round_recoverable,
)
from tests.secagg.harness import feasible, make_config, random_inputs


@pytest.mark.parametrize(("n", "k"), [(10, 4), (12, 3), (9, 8), (16, 1), (20, 6)])
def test_window_count_equals_the_real_graphs_neighbourhoods(n, k):
    """The Monte Carlo's ring arithmetic counts exactly the live neighbours that
    NeighborGraph gives each client (position p on the ring = graph._ring[p])."""
    graph = NeighborGraph(list(range(100, 100 + n)), k, bytes([n, k]) * 8)
    ring = graph._ring if not graph.is_complete else list(graph.client_ids)
    rng = np.random.default_rng(n * k)
    alive = rng.random((40, n)) < 0.6
    live = _ring_live_neighbours(alive, k)
    for trial in range(40):
        is_alive = {ring[p]: bool(alive[trial, p]) for p in range(n)}
        for p in range(n):
            expected = sum(is_alive[v] for v in graph.neighbors(ring[p]))
            assert live[trial, p] == expected


def test_predicate_agrees_with_full_protocol_runs():
    """round_recoverable on the real graph says exactly which rounds finish."""
    rng = np.random.default_rng(7)
    seen = {True: 0, False: 0}
    for trial in range(24):
        n, k, t = 14, 4, 3 + trial % 2
        cfg, _ = make_config(n, threshold=t, neighbors=k, dim=4, session_id=bytes([trial]) * 16)
        dropped = [int(c) for c in rng.choice(cfg.client_ids, size=3 + trial % 4, replace=False)]
        drops = dict.fromkeys(dropped, "masked")
        survivors = [c for c in cfg.client_ids if c not in drops]
        predicted = round_recoverable(cfg.graph, t, survivors, dropped)
        assert predicted == feasible(cfg, drops)
        result = run_round(cfg, random_inputs(cfg, trial), dropouts=drops)
        assert result.ok == predicted, (trial, result.error)
        seen[predicted] += 1
    assert seen[True] and seen[False]  # both outcomes exercised


def test_monte_carlo_matches_the_helpers_exact_per_client_probability():
    # A setting where failures are common enough to measure well.
    est = monte_carlo_failure(200, 12, 7, 0.35, trials=3000, seed=1)
    exact = failure_probability(200, 12, 7, 0.35, per_client=True)
    assert est.client_exact == pytest.approx(exact)
    assert est.client_ci_low <= exact <= est.client_ci_high
    assert est.client_rate == pytest.approx(exact, rel=0.1)
    # the union bound really bounds the round failure rate
    assert est.rate <= est.bound + 1e-12 or est.ci_low <= est.bound
    assert est.failures > 0 and est.dropped_total == 3000 * 70


def test_no_failures_at_the_planned_dropout_and_certain_failure_far_beyond():
    low, mid, high = failure_curve(1000, 36, 19, [0.1, 0.3, 0.6], trials=300, seed=2)
    assert low.failures == 0 and low.bound < 1e-5  # chosen for 10%: never fails
    assert 0 < mid.rate < 1
    assert high.rate == 1.0


def test_independent_dropouts_and_complete_graph():
    est = monte_carlo_failure(50, 10, 5, 0.4, trials=2000, dropout_model="independent", seed=3)
    exact = failure_probability(50, 10, 5, 0.4, dropout_model="independent", per_client=True)
    assert est.client_ci_low <= exact <= est.client_ci_high
    full_ok = monte_carlo_failure(10, 9, 6, 0.4, trials=50)  # 6 survivors = t
    full_bad = monte_carlo_failure(10, 9, 6, 0.5, trials=50)  # 5 < t
    assert (full_ok.rate, full_bad.rate) == (0.0, 1.0)
    assert (full_ok.bound, full_bad.bound) == (0.0, 1.0)


def test_clopper_pearson_and_argument_checks():
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    lo, hi = clopper_pearson(0, 1000)
    assert lo == 0.0 and hi == pytest.approx(0.00368, rel=0.01)
    lo, hi = clopper_pearson(50, 100)
    assert lo < 0.5 < hi
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)
    with pytest.raises(ValueError, match="odd k"):
        monte_carlo_failure(9, 3, 2, 0.1)
    with pytest.raises(ValueError, match="t must be"):
        monte_carlo_failure(10, 4, 6, 0.1)
    with pytest.raises(ValueError, match="dropout"):
        monte_carlo_failure(10, 4, 2, 1.0)
    with pytest.raises(TypeError):
        monte_carlo_failure(10.0, 4, 2, 0.1)  # type: ignore[arg-type]
