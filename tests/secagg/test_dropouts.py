"""Dropouts at every stage and every rate the threshold allows; clean aborts below it."""

from __future__ import annotations

import pytest

from secagg_rec.errors import LocalProtocolError, ThresholdError
from secagg_rec.secagg import STAGES, ServerState, run_round
from secagg_rec.secagg.client import ClientSession
from secagg_rec.secagg.server import ServerSession
from tests.secagg.harness import ManualRound, make_config, plain_sum, random_inputs

N, T = 9, 5


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("n_drop", range(0, N - T + 1))
def test_full_secagg_completes_exactly_for_every_allowed_dropout(stage, n_drop):
    cfg, _ = make_config(N, threshold=T, bits=24, dim=9)
    inputs = random_inputs(cfg, n_drop)
    drops = {c: stage for c in cfg.client_ids[-n_drop:]} if n_drop else {}
    result = run_round(cfg, inputs, dropouts=drops)
    assert result.ok, result.error
    assert result.aggregate.tolist() == plain_sum(inputs, result.survivors, 24)


@pytest.mark.parametrize("stage", STAGES)
def test_secagg_plus_completes_with_dropouts_at_each_stage(stage):
    cfg, _ = make_config(30, threshold=4, neighbors=8, bits=32, dim=5)
    inputs = random_inputs(cfg, 3)
    drops = {c: stage for c in (2, 11, 23)}
    result = run_round(cfg, inputs, dropouts=drops)
    assert result.ok, result.error
    assert result.aggregate.tolist() == plain_sum(inputs, result.survivors, 32)


@pytest.mark.parametrize("stage", STAGES)
def test_too_few_survivors_aborts_with_typed_error_and_no_sum(stage):
    cfg, _ = make_config(N, threshold=T, bits=24, dim=9)
    drops = {c: stage for c in cfg.client_ids[: N - T + 1]}  # one too many
    result = run_round(cfg, random_inputs(cfg), dropouts=drops)
    assert not result.ok
    assert result.aggregate is None
    assert result.error


def test_server_abort_raises_threshold_error_and_wipes_running_sum():
    cfg, _ = make_config(6, threshold=4, bits=16, dim=4)
    rnd = ManualRound(cfg)
    rnd.advertise()
    rnd.step()  # shares
    # only 3 masked inputs arrive
    for c, msg in list(rnd.outbox.items())[:3]:
        rnd.server.receive(rnd.clients[c].receive(msg))
    with pytest.raises(ThresholdError):
        rnd.server.close_stage()
    assert rnd.server.state is ServerState.ABORTED
    assert rnd.server.result is None
    assert rnd.server._sum is None  # the partial sum is gone
    with pytest.raises(LocalProtocolError):
        rnd.server.close_stage()


def test_unmask_dropouts_below_threshold_abort_before_reconstruction():
    cfg, _ = make_config(6, threshold=4, bits=16, dim=4)
    rnd = ManualRound(cfg)
    rnd.advertise()
    rnd.step()
    rnd.step()  # masked -> consistency requests
    rnd.step()  # consistency -> unmask requests
    for c, msg in list(rnd.outbox.items())[:3]:  # only 3 answer
        rnd.server.receive(rnd.clients[c].receive(msg))
    with pytest.raises(ThresholdError):
        rnd.server.close_stage()
    assert rnd.server.result is None


def test_client_aborts_when_too_few_neighbours_advertise():
    cfg, _ = make_config(5, threshold=4, bits=16, dim=4)
    server = ServerSession(cfg)
    clients = {c: ClientSession(cfg, c) for c in cfg.client_ids}
    for c in (1, 2, 3, 4):
        server.receive(clients[c].start())
    clients[5].start()
    out = server.close_stage()
    # Hand client 1 a broadcast missing two peers: it must abort, not share.
    msg = out[1]
    trimmed = type(msg)(
        session_id=msg.session_id, round_index=msg.round_index, receiver=1, peers=msg.peers[:1]
    )
    with pytest.raises(ThresholdError):
        clients[1].receive(trimmed)
    assert clients[1].state.value == "aborted"
