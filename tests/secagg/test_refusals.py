"""Honest parties refuse malformed, inconsistent, replayed or forged messages."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from secagg_rec.errors import (
    DecodeError,
    DecryptionError,
    LocalProtocolError,
    RemoteProtocolError,
)
from secagg_rec.secagg import ClientState, SecAggConfig, codec
from secagg_rec.secagg.messages import KeyBroadcast, MaskedInput, UnmaskRequest
from tests.secagg.harness import ManualRound, make_config


def _round_at_unmask(n=6, t=4, drop_masked=(6,), authenticated=False):
    cfg, keys = make_config(n, threshold=t, bits=16, dim=4, authenticated=authenticated)
    rnd = ManualRound(cfg, keys)
    rnd.advertise()
    rnd.step()  # -> share broadcasts
    rnd.step(skip=drop_masked)  # -> consistency requests
    rnd.step()  # -> unmask requests
    return rnd


def _assert_failed(client):
    assert client.state is ClientState.FAILED
    with pytest.raises(LocalProtocolError):
        client.receive(KeyBroadcast(session_id=client.config.session_id, round_index=0,
                                    receiver=client.client_id, peers=()))


def test_refuses_client_listed_as_survivor_and_dropped():
    rnd = _round_at_unmask()
    req: UnmaskRequest = rnd.outbox[1]
    assert req.dropped == (6,)
    evil = dataclasses.replace(req, survivors=(*req.survivors, 6))
    with pytest.raises(RemoteProtocolError, match="both survivor and dropped"):
        rnd.clients[1].receive(evil)
    _assert_failed(rnd.clients[1])


def test_refuses_shares_of_client_never_in_round():
    rnd = _round_at_unmask()
    req = rnd.outbox[2]
    evil = dataclasses.replace(req, dropped=(*req.dropped, 99))
    with pytest.raises(RemoteProtocolError, match="never in this round"):
        rnd.clients[2].receive(evil)


def test_refuses_unmask_request_contradicting_consistency_view():
    rnd = _round_at_unmask()
    req = rnd.outbox[3]
    # Move survivor 5 into the dropped list: the server would get 5's key share and
    # (from others) 5's seed share.
    evil = dataclasses.replace(
        req, survivors=tuple(c for c in req.survivors if c != 5), dropped=(*req.dropped, 5)
    )
    with pytest.raises(RemoteProtocolError, match="differ from the consistency check"):
        rnd.clients[3].receive(evil)


def test_refuses_dropped_list_hiding_a_dropped_peer():
    rnd = _round_at_unmask()
    req = rnd.outbox[3]
    evil = dataclasses.replace(req, dropped=())
    with pytest.raises(RemoteProtocolError, match="contradicts"):
        rnd.clients[3].receive(evil)


def test_answers_only_one_unmask_request():
    rnd = _round_at_unmask()
    req = rnd.outbox[4]
    rnd.clients[4].receive(req)
    assert rnd.clients[4].state is ClientState.DONE
    with pytest.raises(RemoteProtocolError):
        rnd.clients[4].receive(req)


@pytest.mark.parametrize("field", ["session_id", "round_index"])
def test_refuses_message_replayed_from_another_session_or_round(field):
    cfg, _ = make_config(4, threshold=3, bits=16, dim=4)
    rnd = ManualRound(cfg)
    out = rnd.advertise()
    other = {"session_id": bytes(16), "round_index": 7}[field]
    replayed = dataclasses.replace(
        out[1], **{field: other}, peers=tuple(dataclasses.replace(p, **{field: other})
                                              for p in out[1].peers)
    )
    with pytest.raises(RemoteProtocolError, match="another session or round"):
        rnd.clients[1].receive(replayed)
    _assert_failed(rnd.clients[1])


def test_refuses_share_box_from_another_session():
    """A box sealed in session A, re-sent in session B with B's header, fails to open."""
    cfg_a, _ = make_config(4, threshold=3, bits=16, dim=4)
    cfg_b = dataclasses.replace(cfg_a, session_id=b"B" * 16)
    a, b = ManualRound(cfg_a, seed=1), ManualRound(cfg_b, seed=1)
    for rnd in (a, b):
        rnd.advertise()
        rnd.step()
    # Same seeds -> same keys in both sessions; only the binding differs.
    old = a.outbox[1]
    forged = dataclasses.replace(b.outbox[1], boxes=old.boxes)
    with pytest.raises(DecryptionError):
        b.clients[1].receive(forged)


def test_refuses_tampered_share_ciphertext():
    cfg, _ = make_config(4, threshold=3, bits=16, dim=4)
    rnd = ManualRound(cfg)
    rnd.advertise()
    rnd.step()
    msg = rnd.outbox[2]
    sender, box = msg.boxes[0]
    flipped = box[:20] + bytes([box[20] ^ 0x01]) + box[21:]
    evil = dataclasses.replace(msg, boxes=((sender, flipped), *msg.boxes[1:]))
    with pytest.raises(DecryptionError):
        rnd.clients[2].receive(evil)
    _assert_failed(rnd.clients[2])


def test_refuses_duplicate_client_ids_in_key_broadcast_bytes():
    cfg, _ = make_config(4, threshold=3, bits=16, dim=4)
    rnd = ManualRound(cfg)
    out = rnd.advertise()
    data = bytearray(codec.encode(out[1]))
    # Patch the second peer's sender id to equal the first's.
    header = 4 + 1 + 1 + 16 + 4
    first = header + 4 + 4  # receiver, count
    entry = 4 + 32 + 32 + 2  # sender, two keys, empty signature blob
    data[first + entry : first + entry + 4] = data[first : first + 4]
    with pytest.raises(DecodeError, match="twice"):
        rnd.clients[1].receive_bytes(bytes(data))
    _assert_failed(rnd.clients[1])


def test_refuses_two_peers_with_the_same_public_key():
    cfg, _ = make_config(4, threshold=3, bits=16, dim=4)
    rnd = ManualRound(cfg)
    msg = rnd.advertise()[1]
    p0, p1 = msg.peers[0], msg.peers[1]
    clone = dataclasses.replace(p1, enc_public=p0.enc_public)
    evil = dataclasses.replace(msg, peers=(p0, clone, *msg.peers[2:]))
    with pytest.raises(RemoteProtocolError, match="already in use"):
        rnd.clients[1].receive(evil)


def test_server_rejects_duplicate_client_messages_and_ids():
    cfg, _ = make_config(4, threshold=3, bits=16, dim=4)
    rnd = ManualRound(cfg)
    adv = rnd.clients[1].start()
    rnd.server.receive(adv)
    with pytest.raises(RemoteProtocolError, match="already sent"):
        rnd.server.receive(adv)
    with pytest.raises(ValueError, match="distinct"):
        SecAggConfig(session_id=bytes(16), client_ids=(1, 2, 2), threshold=2, bits=8, dim=1)


def test_server_rejects_masked_input_of_wrong_length():
    cfg, _ = make_config(4, threshold=3, bits=16, dim=4)
    rnd = ManualRound(cfg)
    rnd.advertise()
    rnd.step()
    reply = rnd.clients[1].receive(rnd.outbox[1])
    short = dataclasses.replace(reply, vector=np.asarray(reply.vector[:3]))
    with pytest.raises(RemoteProtocolError, match="length 3"):
        rnd.server.receive(short)
    rnd.server.receive(reply)  # the well-formed one is still accepted
    assert rnd.server.rejected and "length" in rnd.server.rejected[0][1]


def test_client_refuses_input_of_wrong_length():
    cfg, _ = make_config(4, threshold=3, bits=16, dim=4)
    rnd = ManualRound(cfg)
    with pytest.raises(ValueError):
        rnd.clients[1].set_input(np.zeros(5, dtype=np.uint16))
    with pytest.raises(ValueError):
        rnd.clients[1].set_input(np.full(4, 1 << 16, dtype=np.uint32))


def test_authenticated_client_refuses_substituted_public_key():
    cfg, keys = make_config(5, threshold=3, bits=16, dim=4, authenticated=True)
    rnd = ManualRound(cfg, keys)
    msg = rnd.advertise()[1]
    victim = msg.peers[0]
    attacker_key = bytes(range(32))
    evil = dataclasses.replace(
        msg, peers=(dataclasses.replace(victim, mask_public=attacker_key), *msg.peers[1:])
    )
    with pytest.raises(RemoteProtocolError, match="does not verify"):
        rnd.clients[1].receive(evil)
    # The unauthenticated mode cannot notice the same substitution (documented).
    cfg2, _ = make_config(5, threshold=3, bits=16, dim=4)
    rnd2 = ManualRound(cfg2)
    msg2 = rnd2.advertise()[1]
    v2 = msg2.peers[0]
    evil2 = dataclasses.replace(
        msg2, peers=(dataclasses.replace(v2, mask_public=attacker_key), *msg2.peers[1:])
    )
    rnd2.clients[1].receive(evil2)


def test_authenticated_client_refuses_unmask_without_threshold_signatures():
    rnd = _round_at_unmask(authenticated=True)
    req = rnd.outbox[1]
    evil = dataclasses.replace(req, signatures=req.signatures[:2])
    with pytest.raises(RemoteProtocolError, match="consistency signatures"):
        rnd.clients[1].receive(evil)
    forged = dataclasses.replace(
        req, signatures=((req.signatures[0][0], bytes(64)), *req.signatures[1:])
    )
    with pytest.raises(RemoteProtocolError, match="invalid"):
        rnd.clients[2].receive(dataclasses.replace(forged, receiver=2))


def test_out_of_order_message_fails_the_client():
    cfg, _ = make_config(4, threshold=3, bits=16, dim=4)
    rnd = ManualRound(cfg)
    rnd.advertise()
    rnd.step()
    # skip the share broadcast: hand client 1 an unmask request right away
    req = UnmaskRequest(session_id=cfg.session_id, round_index=0, receiver=1,
                        survivors=(1, 2, 3), dropped=())
    with pytest.raises(RemoteProtocolError, match="unexpected UnmaskRequest"):
        rnd.clients[1].receive(req)
    _assert_failed(rnd.clients[1])


def test_masked_input_words_out_of_range_are_undecodable():
    msg = MaskedInput(session_id=bytes(16), round_index=0, sender=1, bits=8,
                      vector=np.array([1, 2, 3], dtype=np.uint32))
    data = bytearray(codec.encode(msg))
    data[-4:] = struct.pack("<I", 256)
    with pytest.raises(DecodeError, match="2\\*\\*8"):
        codec.decode(bytes(data))
