"""A step-by-step round for tests that tamper with messages between stages."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from secagg_rec.crypto.keys import SigningKey
from secagg_rec.crypto.random import DeterministicRandom
from secagg_rec.secagg import ClientSession, SecAggConfig, ServerSession
from secagg_rec.secagg.messages import Message


def make_config(
    n: int,
    *,
    threshold: int,
    neighbors: int | str = "full",
    bits: int = 32,
    dim: int = 16,
    authenticated: bool = False,
    session_id: bytes | None = None,
    round_index: int = 0,
    ids: Sequence[int] | None = None,
) -> tuple[SecAggConfig, dict[int, SigningKey]]:
    ids = tuple(ids) if ids is not None else tuple(range(1, n + 1))
    keys = {c: SigningKey(rng=DeterministicRandom(1000 + c)) for c in ids} if authenticated else {}
    cfg = SecAggConfig(
        session_id=session_id
        or hashlib.sha256(f"{n}/{neighbors}/{threshold}".encode()).digest()[:16],
        client_ids=ids,
        threshold=threshold,
        neighbors=neighbors,  # type: ignore[arg-type]
        bits=bits,
        dim=dim,
        round_index=round_index,
        authenticated=authenticated,
        verify_keys={c: k.public for c, k in keys.items()},
    )
    return cfg, keys


def random_inputs(cfg: SecAggConfig, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        c: rng.integers(0, 1 << cfg.bits, cfg.dim, dtype=np.uint64) for c in cfg.client_ids
    }


def plain_sum(inputs: dict[int, np.ndarray], ids: Sequence[int], bits: int) -> list[int]:
    """Exact integer sum mod 2**bits with Python ints (independent of numpy wrapping)."""
    dim = len(next(iter(inputs.values())))
    total = [0] * dim
    for c in ids:
        for i, v in enumerate(inputs[c].tolist()):
            total[i] += int(v)
    return [v % (1 << bits) for v in total]


class ManualRound:
    """Clients and a server driven one stage at a time; messages stay inspectable."""

    def __init__(self, cfg: SecAggConfig, keys: dict[int, SigningKey] | None = None, seed: int = 0):
        self.cfg = cfg
        self.inputs = random_inputs(cfg, seed)
        self.server = ServerSession(cfg)
        self.clients = {
            c: ClientSession(
                cfg, c, rng=DeterministicRandom(seed * 100_000 + c), signing_key=(keys or {}).get(c)
            )
            for c in cfg.client_ids
        }
        for c, client in self.clients.items():
            client.set_input(self.inputs[c])
        self.outbox: dict[int, Message] = {}

    def advertise(self, skip: Sequence[int] = ()) -> dict[int, Message]:
        for c, client in self.clients.items():
            if c not in skip:
                self.server.receive(client.start())
        self.outbox = self.server.close_stage()
        return self.outbox

    def step(self, skip: Sequence[int] = ()) -> dict[int, Message]:
        """Deliver the outbox to clients (except ``skip``), send replies, close stage."""
        for c, msg in self.outbox.items():
            if c in skip:
                continue
            self.server.receive(self.clients[c].receive(msg))
        self.outbox = self.server.close_stage()
        return self.outbox


def feasible(cfg: SecAggConfig, drops: dict[int, str]) -> bool:
    """Independent oracle: can a round with these dropouts finish?

    Follows the protocol's sets: U1 advertised, U2 shared, U3 sent masked input, U4
    answered the consistency check, U5 answered the unmask request.
    """
    order = ["advertise", "share", "masked", "consistency", "unmask"]

    def alive_after(stage: str) -> set[int]:
        limit = order.index(stage)
        return {c for c in cfg.client_ids if c not in drops or order.index(drops[c]) > limit}

    t, g = cfg.threshold, cfg.graph
    u1, u2, u3 = alive_after("advertise"), alive_after("share"), alive_after("masked")
    u4, u5 = alive_after("consistency"), alive_after("unmask")
    if min(len(u1), len(u2), len(u3), len(u4)) < t:
        return False
    # clients abort if too few live holders when sharing or masking
    for c in u2:
        if len(u1 & set(g.holders(c))) < t:
            return False
    dropped = {v for v in u2 - u3 if u3 & set(g.neighbors(v))}
    for s in (u3, u4, u5):
        for c in u3 | dropped:
            if len(s & set(g.holders(c))) < t:
                return False
    return True
