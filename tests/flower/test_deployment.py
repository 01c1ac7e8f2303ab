"""Deployment engine: ``flower-superlink --insecure`` + 4 ``flower-supernode`` on loopback.

The app in ``deploy_app/`` is started with ``flwr run``; its clients contribute known
vectors (a function of partition id and round), and its ServerApp writes each round's
result. The tests compare the aggregate bit for bit with the in-memory driver run on
the same config and the same encoded inputs. Every process is killed in the fixture's
teardown, and every wait is bounded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the deployment test needs flwr (pip install '.[flower]')")

from secagg_rec.encoding import Quantizer
from secagg_rec.secagg import SecAggConfig, run_round
from tests.flower.federation import BIN, LocalFederation, wait_for

APP = Path(__file__).parent / "deploy_app"
sys.path.insert(0, str(APP))
from secagg_rec_flower_testapp.inputs import SCALE, WEIGHT_MAX, update_of  # noqa: E402

pytestmark = pytest.mark.slow
NODES = 3  # full graph, t = 2: one node can die after uploading


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    for tool in ("flower-superlink", "flower-supernode", "flwr"):
        if not (BIN / tool).exists():
            pytest.skip(f"{tool} not found next to {sys.executable}")
    fed = LocalFederation(tmp_path_factory.mktemp("federation"), NODES)
    try:
        fed.start()
        yield fed
    finally:
        fed.stop()


def wait_done(fed: LocalFederation, out: Path, timeout: float) -> dict:
    try:
        wait_for(lambda: (out / "done.json").exists(), timeout, "the ServerApp to finish", 0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{fed.diagnostics()}") from None
    done = json.loads((out / "done.json").read_text())
    assert done["ok"], done.get("error")
    return done


def node_entries(out: Path) -> list[dict]:
    """What each node's ClientApp wrote: node id, partition id, ran inside Ray."""
    return [json.loads(path.read_text()) for path in (out / "nodes").glob("*.json")]


def partitions(out: Path) -> dict[int, int]:
    return {int(e["node"]): int(e["partition"]) for e in node_entries(out)}


def reference(result: dict, partition_of: dict[int, int], dropouts: dict[int, str]):
    """The in-memory driver on the same config and the same encoded inputs."""
    cfg = result["config"]
    config = SecAggConfig(
        session_id=bytes.fromhex(cfg["session_id"]),
        round_index=cfg["round_index"],
        client_ids=tuple(cfg["client_ids"]),
        threshold=cfg["threshold"],
        neighbors=cfg["neighbors"],
        bits=cfg["bits"],
        dim=cfg["dim"],
    )
    quant = Quantizer(
        bits=cfg["bits"],
        clip=1.0,
        scale=SCALE,
        max_clients=config.n,
        weighted=True,
        weight_max=WEIGHT_MAX,
        weight_scale=1.0,
    )
    inputs = {}
    for node_text, cid in result["clients"].items():
        vector, weight = update_of(partition_of[int(node_text)], config.round_index)
        inputs[cid] = quant.encode(vector, np.random.default_rng(), weight=weight)
    clients = {int(k): v for k, v in result["clients"].items()}
    outcome = run_round(config, inputs, dropouts={clients[n]: s for n, s in dropouts.items()})
    assert outcome.ok, outcome.error
    return outcome, inputs


def exact_mean(parts: list[int], round_index: int) -> np.ndarray:
    updates = [update_of(p, round_index) for p in parts]
    return sum(w * x for x, w in updates) / sum(w for _, w in updates)


def test_two_rounds_over_superlink_and_supernodes(federation, tmp_path):
    out = tmp_path / "out"
    federation.run(APP, {"out-dir": str(out), "rounds": 2, "num-nodes": NODES, "timeout": 60.0})
    wait_done(federation, out, timeout=300)
    partition_of = partitions(out)
    assert sorted(partition_of.values()) == list(range(NODES))
    assert not any(e["ray"] for e in node_entries(out))  # real SuperNodes, no Ray
    sessions = set()
    for index in (0, 1):
        result = json.loads((out / f"round-{index}.json").read_text())
        assert result["ok"], result["error"]
        assert sorted(result["survivors"]) == sorted(partition_of)
        assert result["dropped"] == []
        expected, _ = reference(result, partition_of, {})
        assert result["aggregate"] == expected.aggregate.tolist()  # bit for bit
        np.testing.assert_allclose(
            result["mean"], exact_mean(list(range(NODES)), index), rtol=0, atol=1e-12
        )
        sessions.add(result["config"]["session_id"])
    assert len(sessions) == 2


def test_node_killed_after_uploading_its_masked_input(federation, tmp_path):
    out = tmp_path / "out"
    federation.run(
        APP,
        {
            "out-dir": str(out),
            "rounds": 1,
            "first-round": 10,
            "num-nodes": NODES,
            "pause-after": "10:masked",
            "timeout": 60.0,
            "consistency-timeout": 45.0,
        },
    )
    try:
        wait_for(lambda: (out / "paused.json").exists(), 240, "the masked stage to close", 0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{federation.diagnostics()}") from None
    paused = json.loads((out / "paused.json").read_text())
    partition_of = partitions(out)
    victim = next(node for node, part in partition_of.items() if part == 0)
    assert victim in paused["accepted"]  # its masked input is in the server's sum
    federation.kill("node0", hard=True)  # the SuperNode holding partition 0, and its children
    (out / "resume").touch()
    wait_done(federation, out, timeout=180)

    result = json.loads((out / "round-10.json").read_text())
    assert result["ok"], result["error"]
    consistency = next(s for s in result["stages"] if s["stage"] == "consistency")
    # Either no answer before the timeout, or the SuperLink's "node unavailable".
    assert victim not in consistency["accepted"]
    assert consistency["missing"] == [victim] or list(consistency["errors"]) == [str(victim)]
    assert victim in result["survivors"] and result["dropped"] == []
    expected, inputs = reference(result, partition_of, {victim: "consistency"})
    assert result["aggregate"] == expected.aggregate.tolist()  # bit for bit
    plain_sum = sum(w.astype(np.uint64) for w in inputs.values()) % np.uint64(1 << 32)
    assert result["aggregate"] == plain_sum.tolist()  # the dead node's input is in it
    np.testing.assert_allclose(
        result["mean"], exact_mean(list(range(NODES)), 10), rtol=0, atol=1e-12
    )
