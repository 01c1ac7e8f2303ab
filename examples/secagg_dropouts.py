"""Secure aggregation with dropouts, step by step, with no transport at all.

Ten clients average their float vectors. The server only ever sees masked vectors,
yet recovers the exact (weighted) mean, even though two clients vanish mid-round:
one before uploading its masked input (its pairwise masks must be removed) and one
after (its self-mask must be removed).

Run: python examples/secagg_dropouts.py
"""

from __future__ import annotations

import os

import numpy as np

from secagg_rec.encoding import Quantizer
from secagg_rec.secagg import ClientSession, SecAggConfig, ServerSession

N, DIM = 10, 5
rng = np.random.default_rng(0)
updates = {cid: rng.normal(0, 0.1, DIM) for cid in range(1, N + 1)}
examples = {cid: int(rng.integers(10, 200)) for cid in updates}  # weights: stay masked

# 1. Everyone agrees on the round: ring width, threshold, graph, and a quantizer.
quant = Quantizer.fit(bits=40, clip=1.0, max_clients=N, weighted=True, weight_max=1000)
config = SecAggConfig(
    session_id=os.urandom(16),
    client_ids=tuple(updates),
    threshold=4,  # any 4 of a client's 7 holders (itself + 6 neighbours) rebuild its secrets
    neighbors=6,  # SecAgg+: each client pairs with 6 others ("full" = classic SecAgg)
    bits=quant.bits,
    dim=quant.encoded_length(DIM),
)
server = ServerSession(config)
clients = {cid: ClientSession(config, cid) for cid in updates}
for cid, client in clients.items():
    words = quant.encode(updates[cid], np.random.default_rng(cid), weight=examples[cid])
    client.set_input(words)

DROP_BEFORE_UPLOAD, DROP_AFTER_UPLOAD = 3, 7

# 2. Drive the stages. A real transport would send the bytes of codec.encode(msg).
for client in clients.values():
    server.receive(client.start())
outbox = server.close_stage()  # -> key broadcasts
for stage in ("share keys", "masked input", "consistency", "unmask"):
    for cid, msg in outbox.items():
        if stage == "masked input" and cid == DROP_BEFORE_UPLOAD:
            continue  # vanished before uploading
        if stage in ("consistency", "unmask") and cid == DROP_AFTER_UPLOAD:
            continue  # uploaded, then vanished
        server.receive(clients[cid].receive(msg))
    outbox = server.close_stage()
    print(f"{stage:<13} done; server state: {server.state.value}")

# 3. The server decodes the weighted mean of the survivors' updates.
survivors = server.survivors
mean = quant.decode_mean(server.result)
total = sum(examples[c] for c in survivors)
exact = sum(examples[c] * updates[c] for c in survivors) / total
print("survivors:", survivors)
print("decoded mean:", np.round(mean, 6))
print("exact mean:  ", np.round(exact, 6))
print(f"max error {np.max(np.abs(mean - exact)):.2e} <= bound "
      f"{quant.mean_error_bound(len(survivors), total):.2e}")
