"""The client's session between Flower messages: replay, wiping, refusals."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the Flower binding needs flwr (pip install '.[flower]')")

from secagg_rec.flower import SecAggWorkflow
from secagg_rec.flower.client_state import (
    INPUT_RECORD,
    SESSION_RECORD,
    StreamRandom,
)
from tests.flower.fakegrid import FakeGrid
from tests.flower.test_round_inprocess import (
    DIM,
    NODES,
    SETTINGS,
    _expected,
    handler_app,
)


def test_stream_random_is_a_keyed_reproducible_stream():
    key = bytes(range(32))
    a, b = StreamRandom(key), StreamRandom(key)
    assert a.token_bytes(10) + a.token_bytes(6) == b.token_bytes(16)
    assert StreamRandom(bytes(32)).token_bytes(16) != StreamRandom(key).token_bytes(16)
    assert a.token_bytes(0) == b""
    with pytest.raises(ValueError):
        StreamRandom(b"short")
    with pytest.raises(ValueError):
        a.token_bytes(-1)


def test_input_leaves_the_state_after_upload_and_the_session_after_unmask():
    grid = FakeGrid(handler_app(), NODES)
    seen = {}

    def check(report):
        states = [grid.contexts[n].state for n in NODES]
        seen[report.stage] = (
            all(INPUT_RECORD in s for s in states),
            all(SESSION_RECORD in s for s in states),
        )

    result = SecAggWorkflow(SETTINGS, on_stage=check).run_round(grid, dim=DIM)
    assert result.ok
    assert seen["advertise"] == (True, True)
    assert seen["share"] == (True, True)
    assert seen["masked"] == (False, True)  # the encoded update is gone once masked
    assert seen["unmask"] == (False, False)  # and the session once done


def _replay_during(app, grid, node, stage, check_state):
    """An ``on_stage`` hook that, once ``stage`` is reported, sends ``node`` that
    stage's request again, records the refusal reason (``None`` if accepted) and runs
    ``check_state`` on the node's state; and the list of recorded reasons."""
    refused = []

    def hook(report):
        if report.stage == stage:
            reply = app(grid.requests[(node, stage)], grid.contexts[node])
            refused.append(reply.error.reason if reply.has_error() else None)
            check_state(grid.contexts[node].state)

    return hook, refused


def test_second_unmask_request_is_refused():
    app = handler_app()
    grid = FakeGrid(app, NODES)
    assert SecAggWorkflow(SETTINGS).run_round(grid, dim=DIM).ok
    again = grid.requests[(NODES[0], "unmask")]
    reply = app(again, grid.contexts[NODES[0]])
    assert reply.has_error()
    assert "no secure-aggregation session is active" in reply.error.reason


def test_out_of_order_message_fails_the_session_which_then_drops_out():
    app = handler_app()
    grid = FakeGrid(app, NODES)
    victim = NODES[0]

    def wiped(state):
        assert SESSION_RECORD not in state

    # The victim gets the key broadcast a second time: illegal in its state.
    replay_share, refused = _replay_during(app, grid, victim, "share", wiped)
    result = SecAggWorkflow(SETTINGS, on_stage=replay_share).run_round(grid, dim=DIM)
    assert refused and "unexpected KeyBroadcast" in refused[0]
    assert result.ok, result.error
    masked = next(r for r in result.stages if r.stage == "masked")
    assert "no secure-aggregation session is active" in masked.errors[victim]
    reference = _expected(result, {victim: "masked"})
    assert np.array_equal(result.aggregate, reference.aggregate)


def test_replay_rebuilds_the_same_secrets():
    """Two runs of the same round from the same stored state give identical frames."""
    app = handler_app()
    grid = FakeGrid(app, NODES)
    frames = {}

    def tap(node, reply):
        frames.setdefault(node, []).append(bytes(reply.content["secagg_rec.frame"]["frame"].data))
        return reply

    grid.tamper = tap
    snapshot = {}

    def keep(report):
        if report.stage == "share":
            state = grid.contexts[NODES[3]].state
            snapshot["state"] = {k: type(v)(dict(v.items())) for k, v in state.items()}

    assert SecAggWorkflow(SETTINGS, on_stage=keep).run_round(grid, dim=DIM).ok
    # Restore node 3's state as it was after the share stage and replay the masked stage.
    context = grid.contexts[NODES[3]]
    for key in list(context.state.keys()):
        del context.state[key]
    for key, value in snapshot["state"].items():
        context.state[key] = value
    reply = app(grid.requests[(NODES[3], "masked")], context)
    assert not reply.has_error()
    assert bytes(reply.content["secagg_rec.frame"]["frame"].data) == frames[NODES[3]][2]


def test_refused_setup_leaves_the_running_session_alone():
    app = handler_app()
    grid = FakeGrid(app, NODES)
    victim = NODES[0]

    def kept(state):
        assert SESSION_RECORD in state

    # The same round's setup again: refused as a replay, the session survives.
    replay_setup, refused = _replay_during(app, grid, victim, "advertise", kept)
    result = SecAggWorkflow(SETTINGS, on_stage=replay_setup).run_round(grid, dim=DIM)
    assert refused and "not after round 0" in refused[0]
    assert result.ok and victim in result.survivors
    assert np.array_equal(result.aggregate, _expected(result, {}).aggregate)
