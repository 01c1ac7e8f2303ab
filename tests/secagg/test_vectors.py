"""Known-answer vectors (protocols/vectors/secagg-v1.json), checked byte for byte.

The primitive-level values are recomputed here from their written definitions
(protocols/secagg.md) with ``cryptography`` directly — HKDF with a hand-built info
string, AES-ECB on explicit counter blocks — not through the library's helpers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secagg_rec.secagg import ClientSession, SecAggConfig, ServerSession, codec

VECTORS = Path(__file__).resolve().parents[2] / "protocols" / "vectors" / "secagg-v1.json"


@pytest.fixture(scope="module")
def vec() -> dict:
    return json.loads(VECTORS.read_text())


class ReplayRandom:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def token_bytes(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        assert len(out) == n, "session drew more random bytes than recorded"
        self.pos += n
        return out


def _config(v: dict) -> SecAggConfig:
    c = v["config"]
    return SecAggConfig(
        session_id=bytes.fromhex(c["session_id"]),
        round_index=c["round_index"],
        client_ids=tuple(c["client_ids"]),
        threshold=c["threshold"],
        neighbors=c["neighbors"],
        bits=c["bits"],
        dim=c["dim"],
        seed_bytes=c["seed_bytes"],
    )


def _mask_words(seed: bytes, count: int, bits: int) -> list[int]:
    ecb = Cipher(algorithms.AES(seed), modes.ECB()).encryptor()
    width = 4 if bits <= 32 else 8
    stream = b"".join(ecb.update(i.to_bytes(16, "big")) for i in range((count * width + 15) // 16))
    return [int.from_bytes(stream[i * width : (i + 1) * width], "little") % (1 << bits)
            for i in range(count)]


def test_sessions_reproduce_every_message_and_the_sum(vec):
    cfg = _config(vec)
    rngs = {c: ReplayRandom(bytes.fromhex(vec["clients"][str(c)]["random_hex"]))
            for c in cfg.client_ids}
    clients = {c: ClientSession(cfg, c, rng=rngs[c]) for c in cfg.client_ids}
    dropped = set(vec["dropped_after_share_keys"])
    server = ServerSession(cfg)
    for c, cl in clients.items():
        cl.set_input(np.array(vec["inputs"][str(c)], dtype=np.uint32))
        data = codec.encode(cl.start())
        assert data.hex() == vec["messages"][str(c)]["advertise_keys"]
        server.receive_bytes(data)
    out = server.close_stage()
    for name in ["share_keys", "masked_input", "consistency_response", "unmask_response"]:
        for c, m in out.items():
            if c in dropped and name != "share_keys":
                continue
            data = clients[c].receive_bytes(codec.encode(m))
            assert data.hex() == vec["messages"][str(c)][name], (c, name)
            server.receive_bytes(data)
        out = server.close_stage()
    assert server.result.tolist() == vec["sum"]
    for r in rngs.values():
        assert r.pos == len(r.data)


def test_sum_is_the_plain_sum_of_survivors(vec):
    bits = vec["config"]["bits"]
    survivors = [c for c in vec["config"]["client_ids"] if c not in vec["dropped_after_share_keys"]]
    expect = [sum(vec["inputs"][str(c)][i] for c in survivors) % (1 << bits)
              for i in range(vec["config"]["dim"])]
    assert vec["sum"] == expect


def test_derivations_from_their_definitions(vec):
    c = vec["config"]
    sid, rnd, bits = bytes.fromhex(c["session_id"]), c["round_index"], c["bits"]
    pubs = {}
    for cid in c["client_ids"]:
        adv = bytes.fromhex(vec["messages"][str(cid)]["advertise_keys"])
        priv = X25519PrivateKey.from_private_bytes(
            bytes.fromhex(vec["clients"][str(cid)]["mask_private"]))
        pubs[cid] = adv[26 + 4 + 32 : 26 + 4 + 64]
        assert priv.public_key().public_bytes_raw() == pubs[cid]
    for key, pair in vec["pairs"].items():
        a, b = map(int, key.split("-"))
        priv = X25519PrivateKey.from_private_bytes(
            bytes.fromhex(vec["clients"][str(a)]["mask_private"]))
        shared = priv.exchange(X25519PublicKey.from_public_bytes(pubs[b]))
        assert shared.hex() == pair["x25519_shared"]
        lo, hi = sorted((a, b))
        info = (b"secagg_rec/v1/pairwise-mask\x00" + sid + rnd.to_bytes(4, "big")
                + lo.to_bytes(4, "big") + hi.to_bytes(4, "big"))
        seed = HKDF(algorithm=hashes.SHA256(), length=16, salt=None, info=info).derive(shared)
        assert seed.hex() == pair["pairwise_seed"]
        assert _mask_words(seed, 4, bits) == pair["first_mask_words"]
    for cid, words in vec["self_mask_first_words"].items():
        seed = bytes.fromhex(vec["clients"][cid]["self_seed"])
        assert _mask_words(seed, 4, bits) == words


def test_masked_inputs_are_input_plus_masks(vec):
    c = vec["config"]
    bits, ids = c["bits"], c["client_ids"]
    for cid in ids:
        if cid in vec["dropped_after_share_keys"]:
            continue
        data = bytes.fromhex(vec["messages"][str(cid)]["masked_input"])
        words = np.frombuffer(data[26 + 4 + 1 + 4 :], dtype="<u4")[:4].tolist()
        expect = []
        for i in range(4):
            total = vec["inputs"][str(cid)][i] + vec["self_mask_first_words"][str(cid)][i]
            for other in ids:
                if other == cid:
                    continue
                lo, hi = sorted((cid, other))
                word = vec["pairs"][f"{lo}-{hi}"]["first_mask_words"][i]
                total += word if cid < other else -word
            expect.append(total % (1 << bits))
        assert words == expect
