"""Tests for secagg_rec.secagg.params (SecAgg+ (k, t) selection)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from secagg_rec.secagg.params import (
    SecAggPlusParameters,
    choose_parameters,
    disconnection_probability,
    failure_probability,
    security_probability,
)

# --------------------------------------------------------- published figures

# Google's production parameter finder at 2^-40 security, 2^-20 failure, 5% corrupt,
# 33% dropout, semi-honest server (Bell et al. CCS 2020 / google-parfait
# federated-compute, fcp/secagg/server/graph_parameter_finder_test.cc).
PUBLISHED = [(1000, 72, 24), (10_000, 86, 29)]


@pytest.mark.parametrize(("n", "k", "t"), PUBLISHED)
@pytest.mark.parametrize("model", ["exact", "fcp"])
def test_published_points(n: int, k: int, t: int, model: str) -> None:
    p = choose_parameters(n, dropout=0.33, corrupt=0.05, model=model)  # type: ignore[arg-type]
    assert (p.k, p.t) == (k, t)
    assert not p.full and p.holders == k + 1
    assert p.security_log2_prob <= -40 and p.failure_log2_prob <= -20


# More rows of the same Google table: (n, corrupt, dropout, adversary, k, max t).
# Google's test asserts k exactly and t <= the listed value.
GOOGLE_TABLE = [
    (100, 0.45, 0.45, "semi-honest", 92, 46),
    (1000, 0.33, 0.33, "semi-honest", 286, 150),
    (10_000, 0.33, 0.05, "semi-honest", 92, 70),
    (1000, 0.05, 0.05, "semi-honest", 30, 17),
    (100, 0.0, 0.33, "semi-honest", 26, 2),
    (100, 0.3, 0.3, "semi-malicious", 92, 62),
    (1000, 0.05, 0.33, "semi-malicious", 398, 223),
    (1000, 0.33, 0.05, "semi-malicious", 132, 109),
    (1000, 0.0, 0.33, "semi-malicious", 228, 115),
]


@pytest.mark.parametrize(("n", "c", "d", "adversary", "k", "t_max"), GOOGLE_TABLE)
def test_fcp_model_reproduces_google_table(n, c, d, adversary, k, t_max) -> None:
    p = choose_parameters(n, dropout=d, corrupt=c, adversary=adversary, model="fcp")
    assert p.k == k
    assert p.t <= t_max


def test_bisection_path_beyond_linear_scan() -> None:
    # Google: n = 10^5, 30% corrupt, 30% dropout, semi-malicious -> k = 9388, t <= 6286.
    p = choose_parameters(
        100_000, dropout=0.3, corrupt=0.3, adversary="semi-malicious", model="fcp"
    )
    assert p.k == 9388 and p.t <= 6286


# ------------------------------------------------------------- hand checks


def test_failure_probability_hand_example() -> None:
    # n=5, D=2: a dropped client's 2 neighbours come from 4 others of which 3 survive.
    # P[S <= 1] = 1 - C(3,2)/C(4,2) = 1/2; union bound 5/2 capped at 1.
    assert failure_probability(5, 2, 2, 0.4, per_client=True) == pytest.approx(0.5)
    assert failure_probability(5, 2, 2, 0.4) == 1.0
    # t = 1 needs one live holder; only one other client dropped, so never fails.
    assert failure_probability(5, 2, 1, 0.4) == 0.0
    assert failure_probability(5, 2, 1, 0.4, log2=True) == -math.inf
    # A larger case by hand: n = 11, D = 3, k = 4, t = 4 -> fails iff >= 1 of the 4
    # neighbours is among the 2 other dropped clients out of 10:
    # 1 - C(8,4)/C(10,4) = 1 - 70/210 = 2/3.
    assert failure_probability(11, 4, 4, 3 / 11, per_client=True) == pytest.approx(2 / 3)
    assert failure_probability(11, 4, 4, 3 / 11, log2=True) == 0.0  # 11 * 2/3 capped


def test_failure_probability_independent_model_hand_example() -> None:
    # Each neighbour survives w.p. 1/2: P[Bin(2, 1/2) <= 1] = 3/4; n * 3/4 capped.
    assert failure_probability(
        5, 2, 2, 0.5, dropout_model="independent", per_client=True
    ) == pytest.approx(0.75)
    # P[Bin(3, 0.9) <= 0] = 0.1^3
    assert failure_probability(
        10, 3, 1, 0.1, dropout_model="independent", per_client=True
    ) == pytest.approx(1e-3)
    assert failure_probability(10, 3, 1, 0.0, dropout_model="independent") == 0.0


def test_disconnection_probability_hand_example() -> None:
    # n=20, k=4, B = 2 + 4 = 6: 20*15/2 * (6*5*4*3)/(20*19*18*17) = 54000/116280.
    got = disconnection_probability(20, 4, corrupt=0.1, dropout=0.2)
    assert got == pytest.approx(54000 / 116280)
    assert disconnection_probability(20, 8, corrupt=0.1, dropout=0.2) == 0.0  # k > B
    assert disconnection_probability(10, 2, corrupt=0.1, dropout=0.2) == 1.0  # capped
    assert disconnection_probability(20, 19, corrupt=0.1, dropout=0.2) == 0.0  # complete


def test_security_probability_hand_example() -> None:
    # n=5, A=1, no dropouts: X ~ HG(4, 1, 2). t = 2 is never reached and B = 1 < k.
    assert security_probability(5, 2, 2, corrupt=0.2, dropout=0.0) == 0.0
    # t = 1: P[X >= 1] = 1 - C(3,2)/C(4,2) = 1/2, union bound 5/2 capped at 1.
    assert security_probability(5, 2, 1, corrupt=0.2, dropout=0.0) == 1.0
    # Semi-malicious at k=2, t=2: the server wins if 2t <= k + X + 1, i.e. X >= 1.
    assert security_probability(5, 2, 2, 0.2, 0.0, adversary="semi-malicious") == 1.0
    assert security_probability(5, 2, 3, 0.2, 0.0, adversary="semi-malicious") == 0.0


def test_failure_probability_matches_monte_carlo() -> None:
    """The count model, simulated: D random dropouts; a dropped client's k neighbours
    are a random k-subset of the other n - 1 clients."""
    n, k, t, dropout = 60, 10, 5, 0.4
    drops = math.floor(dropout * n)
    rng = np.random.default_rng(1)
    trials = 40_000
    # client 0 is dropped; D - 1 of clients 1..n-1 drop too
    others_dropped = np.argsort(rng.random((trials, n - 1)), axis=1) < drops - 1
    neighbours = np.argsort(rng.random((trials, n - 1)), axis=1)[:, :k]
    live = k - np.take_along_axis(others_dropped, neighbours, axis=1).sum(axis=1)
    estimate = float((live < t).mean())
    exact = failure_probability(n, k, t, dropout, per_client=True)
    sigma = math.sqrt(exact * (1 - exact) / trials)
    assert 0.01 < exact < 0.5
    assert abs(estimate - exact) < 5 * sigma


# ------------------------------------------------------------ the guarantees


@pytest.mark.parametrize(
    ("n", "dropout", "corrupt", "adversary"),
    [
        (100, 0.33, 0.05, "semi-honest"),
        (1000, 0.33, 0.05, "semi-honest"),
        (5000, 0.1, 0.2, "semi-honest"),
        (1000, 0.2, 0.1, "semi-malicious"),
        (300, 0.05, 0.3, "semi-malicious"),
    ],
)
def test_returned_parameters_meet_the_targets(n, dropout, corrupt, adversary) -> None:
    p = choose_parameters(n, dropout=dropout, corrupt=corrupt, adversary=adversary)
    assert p.k % 2 == 0 and 2 <= p.k <= n - 2 and 2 <= p.t <= p.k + 1
    sec = security_probability(n, p.k, p.t, corrupt, dropout, adversary=adversary)
    fail = failure_probability(n, p.k, p.t, dropout)
    assert sec <= 2.0**-40 and fail <= 2.0**-20
    sec_log2 = security_probability(n, p.k, p.t, corrupt, dropout, adversary=adversary, log2=True)
    assert sec_log2 == pytest.approx(p.security_log2_prob)
    assert failure_probability(n, p.k, p.t, dropout, log2=True) == pytest.approx(
        p.failure_log2_prob
    )
    # The threshold is the smallest that keeps the corrupt-holder event within its
    # half of the budget (2^-41): one less and that event alone exceeds it.
    if p.t > 2:
        lower = security_probability(n, p.k, p.t - 1, corrupt, dropout, adversary=adversary)
        assert lower >= 2.0**-41


def test_fewer_neighbours_cannot_meet_the_targets() -> None:
    n, dropout, corrupt = 1000, 0.33, 0.05
    p = choose_parameters(n, dropout=dropout, corrupt=corrupt)
    k = p.k - 2
    ok = [
        t
        for t in range(2, k + 2)
        if security_probability(n, k, t, corrupt, dropout) <= 2.0**-40
        and failure_probability(n, k, t, dropout) <= 2.0**-20
    ]
    assert ok == []


def test_stricter_targets_need_more_neighbours() -> None:
    base = choose_parameters(1000, dropout=0.33, corrupt=0.05)
    stricter_fail = choose_parameters(1000, dropout=0.33, corrupt=0.05, failure_bits=40)
    stricter_sec = choose_parameters(1000, dropout=0.33, corrupt=0.05, security_bits=80)
    assert stricter_fail.k > base.k and stricter_fail.failure_log2_prob <= -40
    assert stricter_sec.k > base.k and stricter_sec.security_log2_prob <= -80
    semi_mal = choose_parameters(1000, dropout=0.33, corrupt=0.05, adversary="semi-malicious")
    assert semi_mal.k > base.k and 2 * semi_mal.t > semi_mal.k + 1


def test_more_dropout_needs_more_neighbours() -> None:
    for n, corrupt in [(100, 0.05), (1000, 0.05), (1000, 0.2)]:
        ks = [
            choose_parameters(n, dropout=d, corrupt=corrupt).k
            for d in (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
        ]
        assert ks == sorted(ks), (n, corrupt, ks)
        assert ks[-1] > ks[0]


def test_more_clients_never_need_fewer_neighbours() -> None:
    for corrupt, dropout in [(0.05, 0.33), (0.2, 0.2)]:
        ks = [
            choose_parameters(n, dropout=dropout, corrupt=corrupt).k
            for n in (30, 100, 300, 1000, 3000, 10_000, 100_000)
        ]
        assert ks == sorted(ks), (corrupt, dropout, ks)


# --------------------------------------------------------------- full graph


def test_small_n_falls_back_to_the_complete_graph() -> None:
    for n in (2, 3):
        p = choose_parameters(n, dropout=0.0, corrupt=0.0)
        assert p.full and p.k == n - 1 and p.t == 2
        assert p.security_log2_prob == -math.inf and p.failure_log2_prob == -math.inf
    # n = 5, A = D = 1, semi-malicious. k = 2 fails: X <= 1 needs 2t > 2 + 1 + 1, so
    # t >= 3, but a dropped client keeps only its 2 neighbours. The complete graph
    # needs 2t > n + A = 6 and t <= n - D = 4: t = 4.
    p = choose_parameters(5, dropout=0.2, corrupt=0.2, adversary="semi-malicious")
    assert p.full and (p.k, p.t) == (4, 4)
    # n = 12, A = D = 3: some sparse k already works (with these small counts, the
    # bad events are impossible rather than merely unlikely).
    p = choose_parameters(12, dropout=0.25, corrupt=0.25, adversary="semi-malicious")
    assert not p.full
    assert security_probability(12, p.k, p.t, 0.25, 0.25, adversary="semi-malicious") == 0
    assert failure_probability(12, p.k, p.t, 0.25) == 0


def test_complete_graph_when_the_ring_would_disconnect() -> None:
    # n = 4, A = D = 1: the only sparse option, k = 2 (a 4-cycle), is disconnected by
    # 2 bad clients on opposite corners: bound 4 * 1 / 2 * (2 * 1) / (4 * 3) = 1/3.
    assert disconnection_probability(4, 2, 0.25, 0.25) == pytest.approx(1 / 3)
    p = choose_parameters(4, dropout=0.25, corrupt=0.25)
    # Complete graph, semi-honest: t > A = 1, t >= 2, t <= n - D = 3.
    assert p.full and (p.k, p.t) == (3, 2)


# -------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 1000, "dropout": 0.5, "corrupt": 0.5}, "corrupt \\+ dropout"),
        ({"n": 1000, "dropout": 0.7, "corrupt": 0.4}, "corrupt \\+ dropout"),
        (
            {"n": 1000, "dropout": 0.4, "corrupt": 0.3, "adversary": "semi-malicious"},
            "2\\*dropout",
        ),
        ({"n": 2, "dropout": 0.5, "corrupt": 0.0}, "at most 0 dropouts"),
        ({"n": 1000, "dropout": 1.0, "corrupt": 0.0}, "dropout"),
        ({"n": 1000, "dropout": -0.1, "corrupt": 0.0}, "dropout"),
        ({"n": 1000, "dropout": 0.1, "corrupt": 1.2}, "corrupt"),
        ({"n": 1, "dropout": 0.1, "corrupt": 0.1}, "n must be"),
        ({"n": 1000, "dropout": 0.1, "corrupt": 0.1, "security_bits": 0}, "security_bits"),
        ({"n": 1000, "dropout": 0.1, "corrupt": 0.1, "failure_bits": math.inf}, "failure"),
        ({"n": 1000, "dropout": 0.1, "corrupt": 0.1, "adversary": "malicious"}, "adversary"),
        ({"n": 1000, "dropout": 0.1, "corrupt": 0.1, "model": "other"}, "model"),
    ],
)
def test_impossible_or_invalid_targets_raise_value_error(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        choose_parameters(**kwargs)


def test_bad_types_raise_type_error() -> None:
    with pytest.raises(TypeError):
        choose_parameters(1000.0, dropout=0.1, corrupt=0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        choose_parameters(1000, dropout="0.1", corrupt=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        failure_probability(10, 10, 2, 0.1)  # k > n - 1
    with pytest.raises(ValueError):
        disconnection_probability(10, 3, 0.1, 0.1)  # odd k below n - 1


# ----------------------------------------------------------------- result


def test_result_is_frozen_and_explains_itself() -> None:
    p = choose_parameters(1000, dropout=0.33, corrupt=0.05)
    assert isinstance(p, SecAggPlusParameters)
    with pytest.raises(AttributeError):
        p.k = 10  # type: ignore[misc]
    assert p.max_corrupt == 50 and p.max_dropouts == 330
    text = p.explain()
    assert "k=72" in text and "t=24" in text and "Harary" in text and "2^-40" in text
    assert "k=72" in str(p) and "t=24" in str(p)
