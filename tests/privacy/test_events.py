"""DPSGDEvent is a validated, hashable value; merging is exact self-composition."""

from __future__ import annotations

import pytest

from secagg_rec.privacy import DPSGDEvent, merge_events
from secagg_rec.privacy.events import total_steps


def test_event_normalises_numbers_so_equal_events_are_equal():
    assert DPSGDEvent(1, 1, 5) == DPSGDEvent(1.0, 1.0, 5)
    assert hash(DPSGDEvent(1, 1, 5)) == hash(DPSGDEvent(1.0, 1.0, 5))
    assert isinstance(DPSGDEvent(1, 1, 5).noise_multiplier, float)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-0.1, 0.5, 1), ValueError),
        ((1.0, 0.0, 1), ValueError),
        ((1.0, 1.5, 1), ValueError),
        ((1.0, 0.5, -1), ValueError),
        ((float("nan"), 0.5, 1), ValueError),
        ((1.0, float("inf"), 1), ValueError),
        ((1.0, 0.5, 2.0), TypeError),
        ((True, 0.5, 1), TypeError),
        (("1", 0.5, 1), TypeError),
    ],
)
def test_event_rejects_bad_fields(args, error):
    with pytest.raises(error):
        DPSGDEvent(*args)


def test_event_is_frozen():
    event = DPSGDEvent(1.0, 0.5, 3)
    with pytest.raises(AttributeError):
        event.steps = 4  # type: ignore[misc]


def test_noiseless_only_when_steps_taken():
    assert DPSGDEvent(0.0, 0.5, 1).is_noiseless
    assert not DPSGDEvent(0.0, 0.5, 0).is_noiseless
    assert not DPSGDEvent(0.5, 0.5, 1).is_noiseless


def test_merge_sums_steps_of_identical_mechanisms_and_drops_empty_runs():
    a, b = DPSGDEvent(1.0, 0.1, 10), DPSGDEvent(2.0, 0.1, 7)
    merged = merge_events([a, b, a.steps_with(steps=5), DPSGDEvent(3.0, 0.2, 0)])
    assert merged == (DPSGDEvent(1.0, 0.1, 15), DPSGDEvent(2.0, 0.1, 7))
    assert total_steps(merged) == 22


def test_merge_rejects_non_events():
    with pytest.raises(TypeError):
        merge_events([(1.0, 0.1, 10)])  # type: ignore[list-item]
