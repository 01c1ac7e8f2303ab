"""Setup record and client policy, wire envelope, array flattening, exchange deadline."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the Flower binding needs flwr (pip install '.[flower]')")

from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from secagg_rec.encoding import Quantizer
from secagg_rec.errors import RemoteProtocolError
from secagg_rec.flower import (
    ClientPolicy,
    SecAggSettings,
    exchange,
    flatten,
    setup_from_record,
    setup_to_record,
    unflatten,
)
from secagg_rec.flower.wire import FRAME_RECORD, RECORD, pack, strip, unpack
from secagg_rec.secagg import SecAggConfig
from tests.flower.fakegrid import FakeGrid, act_as_server_task
from tests.flower.test_round_inprocess import NODES, handler_app

CONFIG = SecAggConfig(
    session_id=bytes(range(16)),
    round_index=5,
    client_ids=(3, 1, 7, 9, 11, 12),
    threshold=4,
    neighbors=4,
    bits=40,
    dim=11,
)
QUANT = Quantizer.fit(bits=40, clip=0.5, max_clients=6, l2_clip=2.0, weighted=True, weight_max=99)


def record(**changes) -> ConfigRecord:
    rec = setup_to_record(CONFIG, QUANT, 7)
    for key, value in changes.items():
        if value is None:
            del rec[key]
        else:
            rec[key] = value
    return rec


def test_setup_round_trip_rebuilds_the_same_config_and_quantizer():
    setup = setup_from_record(record(), ClientPolicy())
    for name in (
        "session_id",
        "round_index",
        "client_ids",
        "threshold",
        "neighbors",
        "bits",
        "dim",
        "seed_bytes",
    ):
        assert getattr(setup.config, name) == getattr(CONFIG, name)
    assert setup.config.graph.neighbors(7) == CONFIG.graph.neighbors(7)
    assert setup.quantizer == QUANT
    assert setup.client_id == 7 and setup.value_dim == 10


@pytest.mark.parametrize(
    ("changes", "policy", "message"),
    [
        ({"authenticated": True}, ClientPolicy(), "authenticated mode"),
        ({"threshold": "4"}, ClientPolicy(), "'threshold' has type str"),
        ({"round": True}, ClientPolicy(), "has type bool"),
        ({"session-id": None}, ClientPolicy(), "lacks 'session-id'"),
        ({"client-id": 8}, ClientPolicy(), "not in the round"),
        ({"neighbors": "k4"}, ClientPolicy(), "neighbors='k4'"),
        ({"neighbors": "6"}, ClientPolicy(), "neighbors must be in [1, 5]"),
        ({"threshold": 6}, ClientPolicy(), "threshold must be an int in [1, 5]"),
        ({"q-max-clients": 5}, ClientPolicy(), "the sum could wrap"),
        ({"q-scale": float(2**40)}, ClientPolicy(), "could wrap mod 2**40"),
        ({"client-ids": [3, 1, 7, 9, 11, 11]}, ClientPolicy(), "distinct"),
        ({}, ClientPolicy(min_clients=7), "at least 7"),
        ({}, ClientPolicy(min_threshold=5), "below this client's minimum 5"),
        ({}, ClientPolicy(min_threshold_fraction=0.9), "below 0.9 of the 5 holders"),
        ({}, ClientPolicy(max_dim=10), "exceeds this client's max 10"),
        ({}, ClientPolicy(max_bits=32), "exceed this client's max 32"),
    ],
)
def test_client_refuses_bad_or_weak_setups(changes, policy, message):
    with pytest.raises(RemoteProtocolError) as info:
        setup_from_record(record(**changes), policy)
    assert message in str(info.value)


def test_client_refuses_a_round_it_already_joined():
    with pytest.raises(RemoteProtocolError, match="not after round 5"):
        setup_from_record(record(), ClientPolicy(), last_round=5)
    assert setup_from_record(record(), ClientPolicy(), last_round=4).config.round_index == 5


def test_server_side_setup_refuses_mismatches():
    with pytest.raises(ValueError, match="not in the round"):
        setup_to_record(CONFIG, QUANT, 2)
    small = Quantizer.fit(bits=40, clip=0.5, max_clients=5)
    with pytest.raises(ValueError, match="max_clients"):
        setup_to_record(CONFIG, small, 7)


def test_wire_envelope_round_trip_and_refusals():
    content = pack("masked", b"\x00\x01frame", ConfigRecord({"x": 1}))
    env = unpack(content)
    assert (env.stage, env.frame, env.record["x"]) == ("masked", b"\x00\x01frame", 1)
    assert unpack(pack("advertise")).frame is None
    with pytest.raises(ValueError):
        pack("nope")
    with pytest.raises(ValueError, match="reserved"):
        pack("share", None, ConfigRecord({"stage": "x"}))
    with pytest.raises(RemoteProtocolError, match="no 'secagg_rec'"):
        unpack(RecordDict())
    bad = pack("share")
    bad[RECORD]["version"] = 2
    with pytest.raises(RemoteProtocolError, match="wire version 2"):
        unpack(bad)
    bad = pack("share")
    bad[RECORD]["stage"] = "gossip"
    with pytest.raises(RemoteProtocolError, match="unknown stage"):
        unpack(bad)
    bad = pack("share", b"ab")
    bad[FRAME_RECORD] = ArrayRecord({"frame": Array(np.zeros(2, dtype=np.uint8))})
    with pytest.raises(RemoteProtocolError, match="stype"):
        unpack(bad)
    user = RecordDict({"arrays": ArrayRecord([np.ones(2)])})
    merged = RecordDict({**dict(user.items()), **dict(pack("share", b"f").items())})
    assert list(strip(merged).keys()) == ["arrays"]


def test_flatten_unflatten_round_trip_keeps_shapes_and_dtypes():
    rec = ArrayRecord(
        {"w": Array(np.arange(6, dtype=np.float32).reshape(2, 3)), "b": Array(np.array([7, 8]))}
    )
    flat = flatten(rec)
    assert flat.dtype == np.float64 and flat.tolist() == [0, 1, 2, 3, 4, 5, 7, 8]
    back = unflatten(flat * 2, rec)
    assert list(back.keys()) == ["w", "b"]
    assert back["w"].numpy().dtype == np.float32 and back["w"].numpy().shape == (2, 3)
    assert back["b"].numpy().tolist() == [14, 16]
    with pytest.raises(ValueError, match="needs 8"):
        unflatten(np.zeros(7), rec)
    with pytest.raises(ValueError, match="empty"):
        flatten(ArrayRecord())


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_exchange_stops_at_the_deadline_and_names_the_missing_nodes():
    grid = FakeGrid(handler_app(), NODES)
    grid.drop = {NODES[1]: "share", NODES[4]: "share"}
    fake = FakeClock()
    contents = {node: pack("share", b"x") for node in NODES}
    result = exchange(
        grid,
        contents,
        message_type="train",
        timeout=5.0,
        poll_interval=0.5,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    assert result.missing == (NODES[1], NODES[4])
    assert set(result.errors) == set(NODES) - {NODES[1], NODES[4]}  # refused: no session
    assert result.seconds == pytest.approx(5.0)
    assert sum(fake.sleeps) == pytest.approx(5.0) and max(fake.sleeps) <= 0.5


def test_exchange_discards_a_reply_from_another_node():
    grid = FakeGrid(handler_app(), NODES)

    def reroute(node, reply):
        if node == NODES[2]:  # a content reply that claims to come from another node
            reply.__dict__.update(_error=None, _content=pack("share", b"y"))
            reply.metadata.__dict__["_src_node_id"] = NODES[3]
        return reply

    grid.tamper = reroute
    contents = {node: pack("share", b"x") for node in NODES}
    result = exchange(grid, contents, message_type="train", timeout=1.0)
    assert result.errors[NODES[2]] == "reply from another node"
    with pytest.raises(ValueError):
        exchange(grid, contents, message_type="train", timeout=0)


def test_settings_choose_graph_threshold_and_quantizer():
    assert SecAggSettings().graph_for(6) == ("full", 4)
    assert SecAggSettings(neighbors=4).graph_for(10) == (4, 3)
    assert SecAggSettings(neighbors=4, threshold=2).graph_for(10) == (4, 2)
    with pytest.raises(ValueError, match="needs at least 5 clients"):
        SecAggSettings(neighbors=4).graph_for(4)
    with pytest.raises(ValueError, match="exceeds"):
        SecAggSettings(threshold=9).graph_for(6)
    neighbors, threshold = SecAggSettings(neighbors="auto", dropout=0.1, corrupt=0.05).graph_for(60)
    assert 2 <= threshold <= (59 if neighbors == "full" else neighbors) + 1
    quant = SecAggSettings(bits=40, clip=0.5, weight_max=100).quantizer_for(50)
    assert quant.max_clients == 50 and quant.weighted and quant.bits == 40
    with pytest.raises(ValueError, match="unknown stage"):
        SecAggSettings(timeouts={"gossip": 1.0})
    with pytest.raises(ValueError, match="weight_scale needs an explicit scale"):
        SecAggSettings(weight_scale=1.0)
    with pytest.raises(ValueError):
        SecAggSettings(neighbors="auto", threshold=3)
    assert SecAggSettings(timeouts={"share": 5}).timeouts["share"] == 5
    assert SecAggSettings(timeouts={"share": 5}).timeouts["advertise"] == 600.0


def test_update_from_reply_flattens_every_array_record_and_reads_the_weight():
    from flwr.app import MetricRecord

    from secagg_rec.flower import update_from_reply

    content = RecordDict(
        {
            "a": ArrayRecord({"w": Array(np.array([[1.0, 2.0]]))}),
            "m": MetricRecord({"loss": 0.5}),
            "b": ArrayRecord({"v": Array(np.array([3], dtype=np.int64))}),
            "n": MetricRecord({"num-examples": 12}),
        }
    )
    vector, weight = update_from_reply(content)
    assert vector.tolist() == [1.0, 2.0, 3.0] and weight == 12.0
    assert update_from_reply(content, "missing")[1] is None
    with pytest.raises(ValueError, match="no ArrayRecord"):
        update_from_reply(RecordDict({"n": MetricRecord({"num-examples": 1})}))


def test_handler_refuses_messages_without_the_protocol_record():
    from flwr.app import Context, Message

    from secagg_rec.flower import make_secagg_handler

    handler = make_secagg_handler(lambda m, c: (np.zeros(3), 1.0))
    act_as_server_task()
    msg = Message(RecordDict(), 5, "train")
    msg.metadata.__dict__["_message_id"] = "x"
    ctx = Context(run_id=1, node_id=5, node_config={}, state=RecordDict(), run_config={})
    reply = handler(msg, ctx)
    assert reply.has_error() and "only answers secure-aggregation" in reply.error.reason
