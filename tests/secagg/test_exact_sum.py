"""The unmasked aggregate equals the plain sum mod 2**bits of the survivors' inputs."""

from __future__ import annotations

import numpy as np
import pytest

from secagg_rec.encoding import Quantizer
from secagg_rec.secagg import run_round
from tests.secagg.harness import feasible, make_config, plain_sum, random_inputs

CASES = [
    # n, neighbors, threshold, bits, dropouts {client: stage}
    (2, "full", 2, 32, {}),
    (2, "full", 1, 1, {}),
    (3, "full", 2, 8, {3: "masked"}),
    (5, "full", 3, 62, {1: "advertise", 2: "unmask"}),
    (10, "full", 6, 33, {1: "share", 2: "masked", 3: "consistency", 4: "unmask"}),
    (10, 4, 2, 20, {3: "masked", 5: "unmask", 7: "share"}),
    (12, 3, 2, 16, {4: "masked"}),  # odd k with even n: ring plus diameter
    (20, 6, 4, 40, {i: "masked" for i in (2, 9, 15)}),
    (40, 10, 6, 32, {i: "unmask" for i in range(1, 6)}),
    (31, 30, 16, 24, {i: "masked" for i in range(1, 16)}),  # survivors exactly at threshold
]


@pytest.mark.parametrize(("n", "k", "t", "bits", "drops"), CASES)
def test_aggregate_is_exact_sum_of_survivors(n, k, t, bits, drops):
    cfg, _ = make_config(n, threshold=t, neighbors=k, bits=bits, dim=37)
    inputs = random_inputs(cfg, seed=n * 7 + bits)
    assert feasible(cfg, drops), "test case must leave t live holders everywhere"
    result = run_round(cfg, inputs, dropouts=drops)
    assert result.ok, result.error
    expected_survivors = sorted(
        c for c in cfg.client_ids if drops.get(c) not in ("advertise", "share", "masked")
    )
    assert list(result.survivors) == expected_survivors
    assert result.aggregate is not None
    assert result.aggregate.tolist() == plain_sum(inputs, result.survivors, bits)


def test_survivors_exactly_at_threshold_in_secagg_plus():
    # k=6: holders of each client are 7; t=4; drop so that some neighbourhood keeps exactly 4.
    cfg, _ = make_config(16, threshold=4, neighbors=6, bits=32, dim=8)
    victim = cfg.client_ids[0]
    nbrs = cfg.graph.neighbors(victim)
    drops = {v: "masked" for v in nbrs[:3]}  # victim keeps itself + 3 neighbours = 4 = t
    inputs = random_inputs(cfg, 5)
    result = run_round(cfg, inputs, dropouts=drops)
    assert result.ok, result.error
    assert result.aggregate.tolist() == plain_sum(inputs, result.survivors, 32)


def test_authenticated_mode_sums_exactly():
    cfg, keys = make_config(8, threshold=5, bits=32, dim=11, authenticated=True)
    inputs = random_inputs(cfg, 9)
    result = run_round(cfg, inputs, dropouts={2: "masked", 6: "unmask"}, signing_keys=keys)
    assert result.ok, result.error
    assert result.aggregate.tolist() == plain_sum(inputs, result.survivors, 32)


@pytest.mark.parametrize("weighted", [False, True])
def test_decoded_mean_within_stated_quantization_bound(weighted):
    n, dim = 25, 200
    rng = np.random.default_rng(11)
    floats = {c: rng.uniform(-0.5, 0.5, dim) for c in range(1, n + 1)}
    weights = {c: float(rng.integers(1, 300)) for c in floats}
    quant = Quantizer.fit(
        bits=32, clip=0.5, max_clients=n, weighted=weighted, weight_max=300.0
    )
    cfg, _ = make_config(n, threshold=5, neighbors=8, bits=32, dim=quant.encoded_length(dim))
    enc_rng = np.random.default_rng(12)
    words = {
        c: quant.encode(x, enc_rng, weight=weights[c] if weighted else None)
        for c, x in floats.items()
    }
    drops = {c: "masked" for c in (3, 4, 5)}
    result = run_round(cfg, words, dropouts=drops)
    assert result.ok
    surv = result.survivors
    if weighted:
        total_w = sum(weights[c] for c in surv)
        exact = sum(weights[c] * floats[c] for c in surv) / total_w
        got = quant.decode_mean(result.aggregate)
        bound = quant.mean_error_bound(len(surv), total_w)
    else:
        exact = sum(floats[c] for c in surv) / len(surv)
        got = quant.decode_mean(result.aggregate, count=len(surv))
        bound = quant.mean_error_bound(len(surv))
    err = np.max(np.abs(got - exact))
    assert err < bound
    # and the bound is not vacuous: the error is far below the values' scale
    assert bound < 1e-4


@pytest.mark.parametrize("seed", range(12))
def test_random_dropout_schedules_finish_exactly_iff_feasible(seed):
    """Random graphs and dropouts: the round finishes exactly when the oracle says it
    can, and aborts cleanly (no aggregate) when it cannot."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 24))
    k = int(rng.integers(2, n - 1)) // 2 * 2
    t = int(rng.integers(2, k + 2))
    stages = ["advertise", "share", "masked", "consistency", "unmask"]
    drops = {
        int(c): stages[int(rng.integers(0, 5))]
        for c in rng.choice(np.arange(1, n + 1), size=int(rng.integers(0, n // 2)), replace=False)
    }
    cfg, _ = make_config(n, threshold=t, neighbors=k, bits=30, dim=6)
    inputs = random_inputs(cfg, seed)
    result = run_round(cfg, inputs, dropouts=drops)
    assert result.ok == feasible(cfg, drops), (result.error, drops)
    if result.ok:
        assert result.aggregate.tolist() == plain_sum(inputs, result.survivors, 30)
    else:
        assert result.aggregate is None and result.error
