"""Calibration round-trips: the σ returned gives ε <= target, within 2% of it."""

from __future__ import annotations

import pytest

from secagg_rec.privacy import (
    DPSGDEvent,
    calibrate_noise,
    epsilon,
    planned_steps,
    steps_per_epoch,
)

ROUND_TRIPS = [
    # (target ε, δ, q, T): the four settings, as targets.
    (0.947, 1e-5, 0.01, 10_000),
    (2.30, 1e-5, 0.004, 15_000),
    (0.060, 1e-9, 1.31e-4, 3000),
    (13.56, 1e-6, 0.05, 500),
    (1.0, 1e-5, 1.0, 10),
]


@pytest.mark.parametrize(("target", "delta", "q", "steps"), ROUND_TRIPS)
def test_round_trip_meets_the_target_within_two_percent(target, delta, q, steps):
    sigma = calibrate_noise(target, delta, q, steps)
    achieved = epsilon(DPSGDEvent(sigma, q, steps), delta)
    assert achieved <= target
    assert achieved >= 0.98 * target


def test_round_trip_with_another_accountant():
    sigma = calibrate_noise(3.0, 1e-5, 0.02, 2000, accountant="rdp")
    achieved = epsilon(DPSGDEvent(sigma, 0.02, 2000), 1e-5, "rdp")
    assert 0.98 * 3.0 <= achieved <= 3.0


def test_calibrated_sigma_is_nearly_the_smallest():
    sigma = calibrate_noise(2.0, 1e-5, 0.05, 300)
    assert epsilon(DPSGDEvent(sigma * 0.97, 0.05, 300), 1e-5) > 2.0


def test_epochs_times_rounds_is_the_same_as_the_steps():
    q = 0.05  # 20 steps an epoch
    assert steps_per_epoch(q) == 20
    assert planned_steps(sample_rate=q, epochs=2, rounds=10) == 400
    assert planned_steps(sample_rate=q, epochs=0.5, rounds=3) == 30
    assert calibrate_noise(2.0, 1e-5, q, epochs=2, rounds=10) == calibrate_noise(2.0, 1e-5, q, 400)


def test_steps_per_epoch_matches_a_loader_of_batch_b():
    # N = 700 examples, B = 32: ceil(700/32) = 22 batches, q = 32/700.
    assert steps_per_epoch(32 / 700) == 22
    assert steps_per_epoch(1.0) == 1


def test_a_huge_target_stops_at_the_smallest_sigma_searched():
    sigma = calibrate_noise(1e6, 1e-5, 0.01, 10)
    assert sigma == pytest.approx(0.1)
    assert epsilon(DPSGDEvent(sigma, 0.01, 10), 1e-5) <= 1e6


def test_an_unreachable_target_is_a_value_error():
    with pytest.raises(ValueError, match="out of reach"):
        calibrate_noise(1e-6, 1e-12, 1.0, 10_000, accountant="rdp")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"target_epsilon": 0}, ValueError),
        ({"target_epsilon": float("inf")}, ValueError),
        ({"target_epsilon": "1"}, TypeError),
        ({"delta": 0}, ValueError),
        ({"sample_rate": 0}, ValueError),
        ({"sample_rate": 1.5}, ValueError),
        ({"steps": 0}, ValueError),
        ({"steps": 10.0}, TypeError),
        ({"steps": None}, ValueError),  # neither steps nor epochs
        ({"epochs": 1}, ValueError),  # both steps and epochs
        ({"rounds": 2}, ValueError),  # rounds without epochs
        ({"rtol": 0}, ValueError),
        ({"accountant": "nope"}, ValueError),
    ],
)
def test_bad_arguments_raise_before_any_search(kwargs, error):
    args = {"target_epsilon": 1.0, "delta": 1e-5, "sample_rate": 0.01, "steps": 100}
    args.update(kwargs)
    with pytest.raises(error):
        calibrate_noise(**args)
