"""Quantization into Z_{2^b}: wrap check, unbiased rounding, error bounds, weights."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg_rec.encoding import Quantizer, required_bits


def test_worked_example_from_the_docstring():
    with pytest.raises(ValueError, match="use bits >= 6"):
        Quantizer(bits=4, clip=7, scale=1, max_clients=3)
    q = Quantizer(bits=6, clip=7, scale=1, max_clients=3)
    words = [q.encode(np.array([v]), np.random.default_rng(0)) for v in (-3.0, 5.0, 7.0)]
    total = sum(int(w[0]) for w in words) % 64
    assert q.decode_sum(np.array([total], dtype=np.uint64)).tolist() == [9.0]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.floats(0.01, 100), st.integers(4, 62))
def test_fit_never_wraps_at_max_clients(n, clip, bits):
    try:
        q = Quantizer.fit(bits=bits, clip=clip, max_clients=n)
    except ValueError:
        assert required_bits(n, 2) > bits
        return
    assert n * q.value_units() < 2 ** (bits - 1)
    # worst case: every client at +clip, then every client at -clip
    rng = np.random.default_rng(0)
    for sign in (1, -1):
        w = q.encode(np.array([sign * clip]), rng)
        total = (int(w[0]) * n) % (1 << bits)
        got = q.decode_sum(np.array([total], dtype=np.uint64))[0]
        assert abs(got - sign * clip * n) <= q.sum_error_bound(n) + 1e-9 * clip * n


def test_stochastic_rounding_is_unbiased():
    q = Quantizer(bits=32, clip=1.0, scale=10.0, max_clients=1)
    rng = np.random.default_rng(1)
    x = np.full(200_000, 0.123)
    dec = q.decode_sum(q.encode(x, rng))
    assert set(np.unique(dec).round(6).tolist()) == {0.1, 0.2}
    assert abs(dec.mean() - 0.123) < 4 * 0.1 / np.sqrt(len(x))


def test_clipping_l2_then_coordinate():
    q = Quantizer(bits=40, clip=0.5, scale=1e6, max_clients=1, l2_clip=1.0)
    out = q.clip_vector(np.array([3.0, 4.0]))  # norm 5 -> (0.6, 0.8) -> clipped to 0.5
    assert np.allclose(out, [0.5, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        q.encode(np.array([np.nan]), np.random.default_rng(0))


def test_weighted_encoding_carries_weight_inside_the_vector():
    q = Quantizer.fit(bits=40, clip=1.0, max_clients=3, weighted=True, weight_max=100)
    rng = np.random.default_rng(2)
    xs = [np.array([0.5, -0.25]), np.array([-1.0, 1.0]), np.array([0.0, 0.1])]
    ws = [10.0, 30.0, 60.0]
    words = [q.encode(x, rng, weight=w) for x, w in zip(xs, ws, strict=True)]
    assert all(len(w) == 3 for w in words)
    total = sum(w.astype(object) for w in words)
    total = np.array([int(v) % (1 << 40) for v in total], dtype=np.uint64)
    exact = sum(w * x for w, x in zip(ws, xs, strict=True)) / sum(ws)
    assert abs(q.decode_total_weight(total) - 100.0) < 3 / q.effective_weight_scale
    assert np.max(np.abs(q.decode_mean(total) - exact)) < q.mean_error_bound(3, 100.0)
    with pytest.raises(ValueError, match="weight"):
        q.encode(xs[0], rng)
    with pytest.raises(ValueError, match="weight"):
        q.encode(xs[0], rng, weight=101)


def test_bad_parameters():
    for kwargs in (
        {"bits": 1, "clip": 1, "scale": 1, "max_clients": 1},
        {"bits": 63, "clip": 1, "scale": 1, "max_clients": 1},
        {"bits": 8, "clip": 0, "scale": 1, "max_clients": 1},
        {"bits": 8, "clip": 1, "scale": float("nan"), "max_clients": 1},
        {"bits": 8, "clip": 1, "scale": 1, "max_clients": 0},
    ):
        with pytest.raises(ValueError):
            Quantizer(**kwargs)
