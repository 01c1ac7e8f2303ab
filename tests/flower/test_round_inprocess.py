"""Whole rounds through the Flower binding, in process (fake Grid, real Flower messages).

Each test runs :class:`SecAggWorkflow` against ClientApps that use this library's
handler or mod, with every message deflated and inflated as Flower ships it, and
compares the aggregate bit for bit with the in-memory driver run on the same config
and the same encoded inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the Flower binding needs flwr (pip install '.[flower]')")

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp

from secagg_rec.flower import (
    SECAGG_ERROR_CODE,
    ClientPolicy,
    SecAggSettings,
    SecAggWorkflow,
    make_secagg_handler,
    make_secagg_mod,
)
from secagg_rec.flower.wire import FRAME_RECORD, RECORD, pack
from secagg_rec.secagg import STAGES, run_round
from tests.flower.fakegrid import FakeGrid

DIM = 7
NODES = [9_000_000_000_000_000_001 + 17 * i for i in range(6)]  # 64-bit, like Flower's
# scale 2**6 and integer weights with weight_scale 1: every input is on the grid, so
# stochastic rounding is exact and the encoded words are known to the test.
# A node that vanished costs one stage timeout: keep them short in process.
SETTINGS = SecAggSettings(
    bits=32,
    clip=1.0,
    scale=64.0,
    weight_scale=1.0,
    weight_max=50.0,
    timeouts=dict.fromkeys(STAGES, 0.3),
    poll_interval=0.02,
)


def update_of(node: int, round_index: int = 0) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng([node % 1_000_003, round_index])
    return rng.integers(-60, 61, DIM) / 64.0, float(rng.integers(1, 50))


def handler_app() -> ClientApp:
    app = ClientApp()
    app.train()(make_secagg_handler(lambda msg, ctx: update_of(ctx.node_id)))
    return app


def _expected(result, dropouts_by_node):
    inputs = {}
    for node, cid in result.clients.items():
        vector, weight = update_of(node)
        inputs[cid] = result.quantizer.encode(vector, np.random.default_rng(0), weight=weight)
    dropouts = {result.clients[node]: stage for node, stage in dropouts_by_node.items()}
    return run_round(result.config, inputs, dropouts=dropouts)


def test_round_equals_in_memory_driver_bit_for_bit():
    grid = FakeGrid(handler_app(), NODES)
    result = SecAggWorkflow(SETTINGS).run_round(grid, dim=DIM)
    assert result.ok, result.error
    reference = _expected(result, {})
    assert reference.ok
    assert result.aggregate.dtype == reference.aggregate.dtype
    assert np.array_equal(result.aggregate, reference.aggregate)
    assert result.survivors == tuple(sorted(NODES))
    updates = [update_of(n) for n in NODES]
    weights = np.array([w for _, w in updates])
    exact = sum(w * x for x, w in updates) / weights.sum()
    assert result.total_weight == weights.sum()
    np.testing.assert_allclose(result.mean, exact, rtol=0, atol=1e-12)


@pytest.mark.parametrize("stage", STAGES)
def test_dropout_at_each_stage_matches_driver(stage):
    victim = NODES[2]
    grid = FakeGrid(handler_app(), NODES)
    grid.drop = {victim: stage}
    result = SecAggWorkflow(SETTINGS).run_round(grid, dim=DIM)
    assert result.ok, result.error
    reference = _expected(result, {victim: stage})
    assert reference.ok
    assert np.array_equal(result.aggregate, reference.aggregate)
    in_sum = STAGES.index(stage) >= STAGES.index("consistency")
    assert (victim in result.survivors) is in_sum
    assert result.survivors == tuple(sorted(n for n in NODES if n != victim or in_sum))
    assert (victim in result.dropped) is (stage == "masked")
    report = next(r for r in result.stages if r.stage == stage)
    assert victim in report.missing


def test_too_many_dropouts_abort_without_a_sum():
    grid = FakeGrid(handler_app(), NODES)
    grid.drop = {n: "share" for n in NODES[:3]}  # t = 4 of 6, three left
    result = SecAggWorkflow(SETTINGS).run_round(grid, dim=DIM)
    assert not result.ok
    assert result.aggregate is None and result.mean is None
    assert result.error.startswith("ThresholdError")
    # No node was asked for anything after the abort.
    assert not any(stage in ("masked", "consistency", "unmask") for _, stage in grid.delivered)


def test_mod_sends_only_the_masked_frame_never_the_weight():
    seen: list[RecordDict] = []

    app = ClientApp()

    @app.train(mods=[make_secagg_mod()])
    def train(msg: Message, context: Context) -> Message:
        # The user's function sees its own records only, and replies as usual.
        assert RECORD not in msg.content and FRAME_RECORD not in msg.content
        base = msg.content["arrays"].to_numpy_ndarrays()
        vector, weight = update_of(context.node_id)
        delta = [vector[:3].reshape(3, 1), vector[3:]]
        arrays = ArrayRecord([b + d for b, d in zip(base, delta, strict=True)])
        metrics = MetricRecord({"num-examples": int(weight), "train-loss": 0.123})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return Message(RecordDict({"m": MetricRecord({"ok": 1})}), reply_to=msg)

    grid = FakeGrid(app, NODES)

    def tap(node, reply):
        seen.append(reply.content)
        return reply

    grid.tamper = tap
    zero = ArrayRecord([np.zeros((3, 1)), np.zeros(4)])
    content = RecordDict({"arrays": zero, "config": ConfigRecord({"lr": 0.1})})
    result = SecAggWorkflow(SETTINGS).run_round(grid, dim=DIM, content=content)
    assert result.ok, result.error
    assert np.array_equal(result.aggregate, _expected(result, {}).aggregate)
    assert len(seen) == 5 * len(NODES)
    for content in seen:
        assert set(content.keys()) <= {RECORD, FRAME_RECORD}
        assert set(content[RECORD].keys()) == {"version", "stage"}
        assert not content.metric_records
    # Other message types pass through the mod untouched.
    msg = Message(RecordDict(), NODES[0], "evaluate")
    msg.metadata.__dict__["_message_id"] = "e1"
    out = app(msg, grid.contexts[NODES[0]])
    assert out.content["m"]["ok"] == 1


def test_reply_under_another_clients_id_is_rejected():
    grid = FakeGrid(handler_app(), NODES)
    adverts = {}

    def swap(node, reply):
        # Node 1 forwards node 0's advertisement as its own (valid frame, wrong sender).
        if reply.content[RECORD]["stage"] == "advertise":
            adverts[node] = reply.content
            if node == NODES[1]:
                reply.content = adverts[NODES[0]]
        return reply

    grid.tamper = swap
    result = SecAggWorkflow(SETTINGS).run_round(grid, dim=DIM)
    assert result.ok, result.error
    assert any(node == NODES[1] and "sent a message as" in why for node, why in result.rejected)
    assert NODES[1] not in result.survivors and NODES[0] in result.survivors
    assert np.array_equal(result.aggregate, _expected(result, {NODES[1]: "advertise"}).aggregate)


def test_garbage_frame_is_rejected_and_the_round_survives():
    grid = FakeGrid(handler_app(), NODES)

    def corrupt(node, reply):
        if node == NODES[4] and reply.content[RECORD]["stage"] == "share":
            reply.content = pack("share", b"SAGR\x01junk")
        return reply

    grid.tamper = corrupt
    result = SecAggWorkflow(SETTINGS).run_round(grid, dim=DIM)
    assert result.ok, result.error
    assert any(node == NODES[4] and "DecodeError" in why for node, why in result.rejected)
    assert np.array_equal(result.aggregate, _expected(result, {NODES[4]: "share"}).aggregate)


def test_client_refuses_a_weak_round_and_the_server_sees_a_dropout():
    app = ClientApp()
    strict = ClientPolicy(min_clients=7)
    app.train()(make_secagg_handler(lambda m, c: update_of(c.node_id), policy=strict))
    grid = FakeGrid(app, NODES)
    result = SecAggWorkflow(SETTINGS).run_round(grid, dim=DIM)
    assert not result.ok
    errors = result.stages[0].errors
    assert set(errors) == set(NODES)
    assert all(
        why.startswith(f"{SECAGG_ERROR_CODE}:") and "at least 7" in why for why in errors.values()
    )


def test_refusal_reason_never_carries_the_weight():
    app = ClientApp()
    secret_weight = 4242.5  # above weight_max: the encoder refuses it
    app.train()(make_secagg_handler(lambda m, c: (update_of(c.node_id)[0], secret_weight)))
    grid = FakeGrid(app, NODES)
    result = SecAggWorkflow(SETTINGS).run_round(grid, dim=DIM)
    assert not result.ok
    for why in result.stages[0].errors.values():
        assert "4242" not in why and "could not encode" in why


def test_exception_in_the_users_function_propagates_unchanged():
    app = ClientApp()

    def boom(msg, ctx):
        raise ValueError("training diverged at weight 12345")

    handler = make_secagg_handler(boom)
    grid = FakeGrid(app, NODES)  # only for the message and the context
    workflow_msg = _setup_message(grid)
    with pytest.raises(ValueError, match="diverged"):
        handler(workflow_msg, grid.contexts[NODES[0]])


def _setup_message(grid: FakeGrid) -> Message:
    from secagg_rec.flower.setup import setup_to_record
    from secagg_rec.secagg import SecAggConfig

    quant = SETTINGS.quantizer_for(len(NODES))
    config = SecAggConfig(
        session_id=bytes(16),
        client_ids=tuple(range(1, 7)),
        threshold=4,
        bits=32,
        dim=DIM + 1,
    )
    msg = Message(pack("advertise", None, setup_to_record(config, quant, 1)), NODES[0], "train")
    msg.metadata.__dict__["_message_id"] = "s1"
    return msg


def test_second_round_with_fresh_session_and_no_replay():
    grid = FakeGrid(handler_app(), NODES)
    workflow = SecAggWorkflow(SETTINGS)
    first = workflow.run_round(grid, dim=DIM)
    second = workflow.run_round(grid, dim=DIM)
    assert first.ok and second.ok
    assert first.config.session_id != second.config.session_id
    assert (first.round_index, second.round_index) == (0, 1)
    # A third workflow restarting at round 0 is refused by every client (replayed round).
    replay = SecAggWorkflow(SETTINGS).run_round(grid, dim=DIM)
    assert not replay.ok
    assert all("not after round 1" in why for why in replay.stages[0].errors.values())
