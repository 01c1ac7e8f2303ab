"""What leaves a client looks uniform, whatever its input."""

from __future__ import annotations

import numpy as np
from scipy import stats

from secagg_rec.secagg import ClientSession, ServerSession
from tests.secagg.harness import make_config


def _masked_vector(input_words: np.ndarray, bits: int) -> np.ndarray:
    cfg, _ = make_config(3, threshold=2, bits=bits, dim=len(input_words))
    server = ServerSession(cfg)
    clients = {c: ClientSession(cfg, c) for c in cfg.client_ids}
    for cl in clients.values():
        cl.set_input(input_words)
        server.receive(cl.start())
    out = server.close_stage()
    for c, msg in out.items():
        server.receive(clients[c].receive(msg))
    out = server.close_stage()
    return np.asarray(clients[1].receive(out[1]).vector)


def test_masked_input_of_all_zeros_is_uniform():
    vec = _masked_vector(np.zeros(100_000, dtype=np.uint64), 12)
    counts = np.bincount(vec.astype(np.int64), minlength=1 << 12)
    assert stats.chisquare(counts).pvalue > 1e-4


def test_masked_input_of_constant_is_uniform_on_wide_ring():
    vec = _masked_vector(np.full(100_000, 12345, dtype=np.uint64), 48).astype(np.float64)
    assert stats.kstest(vec / 2.0**48, "uniform").pvalue > 1e-4
    # and no word equals the input
    assert np.count_nonzero(vec == 12345) == 0
