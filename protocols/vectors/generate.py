"""Regenerate the known-answer vectors in this folder.

Run only on a deliberate, versioned protocol change (the codec version and the
``secagg_rec/v1/`` KDF prefix must change with it): ``python protocols/vectors/generate.py``.
The tests in ``tests/secagg/test_vectors.py`` check the library against these files
byte for byte, and recompute the primitive-level values (keys, seeds, first mask words,
the sum) independently of the session code.

Every random byte a client consumes is recorded in ``random_hex`` (in the order drawn:
channel private key, mask private key, self-mask seed, Shamir coefficients for the
seed, for the mask key, then one 12-byte AES-GCM nonce per share box), so the whole
round replays deterministically.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from secagg_rec.crypto.kdf import derive_key
from secagg_rec.crypto.keys import agree
from secagg_rec.crypto.prg import expand_mask
from secagg_rec.crypto.random import DeterministicRandom
from secagg_rec.secagg import ClientSession, SecAggConfig, ServerSession, codec

HERE = Path(__file__).resolve().parent


class RecordingRandom:
    """Wraps a source and keeps every byte it hands out."""

    def __init__(self, inner: DeterministicRandom) -> None:
        self.inner = inner
        self.record = bytearray()

    def token_bytes(self, n: int) -> bytes:
        out = self.inner.token_bytes(n)
        self.record += out
        return out


def build() -> dict:
    cfg = SecAggConfig(
        session_id=bytes.fromhex("00112233445566778899aabbccddeeff"),
        round_index=7,
        client_ids=(3, 11, 42, 1000),
        threshold=3,
        neighbors="full",
        bits=20,
        dim=8,
        seed_bytes=16,
    )
    inputs = {c: np.array([(c * 1000 + 17 * i) % (1 << 20) for i in range(8)], dtype=np.uint32)
              for c in cfg.client_ids}
    rngs = {c: RecordingRandom(DeterministicRandom(c)) for c in cfg.client_ids}
    clients = {c: ClientSession(cfg, c, rng=rngs[c]) for c in cfg.client_ids}
    dropped = 1000  # drops after sharing keys: its pairwise masks must be removed
    server = ServerSession(cfg)
    msgs: dict[str, dict[str, str]] = {str(c): {} for c in cfg.client_ids}
    for c, cl in clients.items():
        cl.set_input(inputs[c])
        m = cl.start()
        msgs[str(c)]["advertise_keys"] = codec.encode(m).hex()
        server.receive(m)
    out = server.close_stage()
    names = ["share_keys", "masked_input", "consistency_response", "unmask_response"]
    for name in names:
        for c, m in out.items():
            if c == dropped and name != "share_keys":
                continue
            reply = clients[c].receive(m)
            msgs[str(c)][name] = codec.encode(reply).hex()
            server.receive(reply)
        out = server.close_stage()
    assert server.result is not None
    survivors = [c for c in cfg.client_ids if c != dropped]
    total = sum(inputs[c].astype(np.uint64) for c in survivors) % (1 << 20)
    assert server.result.tolist() == total.tolist()

    keys = {}
    for c in cfg.client_ids:
        rec = bytes(rngs[c].record)
        keys[str(c)] = {
            "enc_private": rec[:32].hex(),
            "mask_private": rec[32:64].hex(),
            "self_seed": rec[64:80].hex(),
            "random_hex": rec.hex(),
        }
    pairs = {}
    for i, a in enumerate(cfg.client_ids):
        for b in cfg.client_ids[i + 1 :]:
            ka = bytes.fromhex(keys[str(a)]["mask_private"])
            pub_b = bytes.fromhex(msgs[str(b)]["advertise_keys"])[26 + 4 + 32 : 26 + 4 + 64]
            shared = agree(ka, pub_b)
            seed = derive_key(shared, "pairwise-mask", cfg.session_id, cfg.round_index, a, b, 16)
            pairs[f"{a}-{b}"] = {
                "x25519_shared": shared.hex(),
                "pairwise_seed": seed.hex(),
                "first_mask_words": expand_mask(seed, 4, cfg.bits).tolist(),
            }
    self_masks = {
        str(c): expand_mask(bytes.fromhex(keys[str(c)]["self_seed"]), 4, cfg.bits).tolist()
        for c in cfg.client_ids
    }
    return {
        "description": "secagg_rec protocol v1 known-answer vectors: one full-graph round "
        "of 4 clients, threshold 3, client 1000 dropping after sharing keys. Hex strings "
        "are bytes; word lists are unsigned integers in Z_{2^bits}.",
        "config": {
            "session_id": cfg.session_id.hex(),
            "round_index": cfg.round_index,
            "client_ids": list(cfg.client_ids),
            "threshold": cfg.threshold,
            "neighbors": "full",
            "bits": cfg.bits,
            "dim": cfg.dim,
            "seed_bytes": cfg.seed_bytes,
        },
        "dropped_after_share_keys": [dropped],
        "inputs": {str(c): inputs[c].tolist() for c in cfg.client_ids},
        "clients": keys,
        "pairs": pairs,
        "self_mask_first_words": self_masks,
        "messages": msgs,
        "sum": server.result.tolist(),
    }


def main() -> None:
    (HERE / "secagg-v1.json").write_text(json.dumps(build(), indent=1) + "\n")


if __name__ == "__main__":
    main()
