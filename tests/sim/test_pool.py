"""The process pool gives exactly the single-process round."""

from __future__ import annotations

import numpy as np
import pytest

from secagg_rec.crypto.random import DeterministicRandom
from secagg_rec.secagg import run_round
from secagg_rec.sim.pool import ProcessPoolClients, run_round_pool
from tests.secagg.harness import make_config, plain_sum, random_inputs


class SeededInputs:
    """Picklable inputs: client c's words from (seed, c)."""

    def __init__(self, bits: int, dim: int, seed: int = 0) -> None:
        self.bits, self.dim, self.seed = bits, dim, seed

    def __call__(self, cid: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, cid])
        return rng.integers(0, 1 << self.bits, self.dim, dtype=np.uint64)


class FailingInputs(SeededInputs):
    def __call__(self, cid: int) -> np.ndarray:
        if cid == 5:
            raise ValueError("no input for client 5")
        return super().__call__(cid)


def _same_round(a, b) -> None:
    assert a.ok == b.ok and a.error == b.error
    assert a.survivors == b.survivors and a.dropped == b.dropped
    assert a.bytes_up == b.bytes_up and a.bytes_down == b.bytes_down
    assert a.client_errors == b.client_errors and a.rejected == b.rejected
    assert [s.clients for s in a.stages] == [s.clients for s in b.stages]
    if a.ok:
        assert a.aggregate.dtype == b.aggregate.dtype
        assert np.array_equal(a.aggregate, b.aggregate)


def test_pool_matches_single_process_byte_for_byte_with_deterministic_clients():
    cfg, _ = make_config(24, threshold=4, neighbors=6, bits=40, dim=300)
    inputs = SeededInputs(cfg.bits, cfg.dim)
    drops = {3: "share", 7: "masked", 11: "masked", 19: "consistency", 20: "unmask"}
    single = run_round(cfg, inputs, dropouts=drops, rng_factory=DeterministicRandom)
    pooled = run_round_pool(cfg, inputs, workers=2, dropouts=drops,
                            rng_factory=DeterministicRandom)
    assert single.ok, single.error
    _same_round(single, pooled)
    expected = plain_sum({c: inputs(c) for c in cfg.client_ids}, single.survivors, cfg.bits)
    assert pooled.aggregate.tolist() == expected
    # every client answered every stage it was due, with the same bytes per stage
    assert pooled.client_stages.keys() == single.client_stages.keys()
    for stage, per_client in single.client_stages.items():
        assert {c: v[1:] for c, v in per_client.items()} == {
            c: v[1:] for c, v in pooled.client_stages[stage].items()}


def test_pool_with_os_randomness_gives_the_exact_sum_and_mapping_inputs():
    cfg, keys = make_config(10, threshold=5, bits=32, dim=64, authenticated=True)
    inputs = random_inputs(cfg, 3)  # a mapping: each worker gets its clients' entries
    drops = {2: "masked", 6: "unmask"}
    single = run_round(cfg, inputs, dropouts=drops, signing_keys=keys)
    pooled = run_round_pool(cfg, inputs, workers=3, dropouts=drops, signing_keys=keys)
    _same_round(single, pooled)  # masks differ run to run, the aggregate does not
    assert pooled.aggregate.tolist() == plain_sum(inputs, pooled.survivors, 32)


def test_pool_abort_is_the_same_abort():
    cfg, _ = make_config(8, threshold=6, bits=16, dim=8)
    inputs = SeededInputs(cfg.bits, cfg.dim)
    drops = {1: "masked", 2: "masked", 3: "masked"}
    single = run_round(cfg, inputs, dropouts=drops)
    pooled = run_round_pool(cfg, inputs, workers=2, dropouts=drops)
    assert not single.ok and "threshold" in single.error
    _same_round(single, pooled)


def test_progress_counts_every_message_once_per_stage():
    cfg, _ = make_config(12, threshold=3, neighbors=4, dim=8)
    calls: list[tuple[str, int, int]] = []
    run_round_pool(cfg, SeededInputs(cfg.bits, cfg.dim), workers=2,
                   dropouts={4: "share"}, on_progress=lambda *a: calls.append(a))
    for stage in ("advertise", "share", "masked", "consistency", "unmask"):
        done = [d for s, d, _ in calls if s == stage]
        totals = {t for s, _, t in calls if s == stage}
        assert len(totals) == 1 and done == list(range(1, totals.pop() + 1))


def test_worker_errors_reach_the_caller_and_bad_arguments_fail_first():
    cfg, _ = make_config(8, threshold=3, dim=8)
    with pytest.raises(ValueError, match="no input for client 5"):
        run_round_pool(cfg, FailingInputs(cfg.bits, cfg.dim), workers=2)
    with pytest.raises(TypeError, match="picklable"):
        ProcessPoolClients(cfg, lambda cid: np.zeros(8, np.uint64), workers=2)
    with pytest.raises(ValueError, match="workers"):
        run_round_pool(cfg, SeededInputs(cfg.bits, cfg.dim), workers=0)
    with pytest.raises(ValueError, match="dropout schedule"):
        run_round_pool(cfg, SeededInputs(cfg.bits, cfg.dim), dropouts={99: "masked"})


def test_clients_of_one_runner_share_one_survivor_list():
    """The runner interns the consistency request's survivor list (memory O(n), not
    O(n^2)); the round is unchanged."""
    from secagg_rec.secagg.driver import LocalClients, drive_round

    cfg, _ = make_config(30, threshold=4, neighbors=6, bits=32, dim=16)
    inputs = SeededInputs(cfg.bits, cfg.dim)
    drops = {4: "masked", 9: "masked"}
    runner = LocalClients(cfg, inputs, rng_factory=DeterministicRandom)
    shared = drive_round(cfg, runner, dropouts=drops)
    plain = run_round(cfg, inputs, dropouts=drops, rng_factory=DeterministicRandom)
    _same_round(shared, plain)
    lists = [getattr(c, "_survivors", None) for c in runner.clients.values()]
    lists = [s for s in lists if s]
    if not lists:
        pytest.skip("ClientSession no longer keeps the survivor list as _survivors")
    assert len(lists) == 28 and len({id(s) for s in lists}) == 1
    assert lists[0] == shared.survivors
