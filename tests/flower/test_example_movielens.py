"""``examples/flower_movielens``: DP training + secure aggregation, small versions.

In process (the app's own ServerApp and ClientApp objects over the fake Grid), and
in Flower's simulation engine on Ray via ``flwr run``. Both use a tiny synthetic
dataset so that DP-SGD on every node stays fast.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the Flower example needs flwr (pip install '.[flower]')")
pytest.importorskip("opacus", reason="the example trains with DP-SGD (opacus)")

import tomli  # a dependency of flwr (tomllib is 3.11+)
from flwr.app import Context, RecordDict

from secagg_rec.flower.wire import FRAME_RECORD, RECORD
from tests.flower.fakegrid import FakeGrid
from tests.flower.federation import BIN, LocalFederation
from tests.flower.test_deployment import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flower_movielens"
sys.path.insert(0, str(EXAMPLE))

pytestmark = pytest.mark.slow
NODES = 4
SMALL = {
    "synthetic-users": 120,
    "synthetic-items": 300,
    "factors": 8,
    "rounds": 2,
    "eval-every": 2,
    "min-nodes": NODES,
    "stage-timeout": 60.0,
}


def app_config(**changes) -> dict:
    with (EXAMPLE / "pyproject.toml").open("rb") as fh:
        config = tomli.load(fh)["tool"]["flwr"]["app"]["config"]
    config.update(SMALL)
    config.update(changes)
    return config


def check_result(result: dict, ledger_dir: Path, users: int) -> None:
    history = result["history"]
    assert [h["round"] for h in history] == [1, 2]
    for entry in history:
        assert entry["ok"], entry.get("error")
        assert entry["survivors"] == NODES
        assert entry["total_weight"] == pytest.approx(NODES)  # uniform weights, masked
    for metrics in (history[-1]["val"], result["test"]):
        assert metrics["ok"], metrics
        assert 0.0 <= metrics["NDCG@10"] <= metrics["HR@10"] <= 1.0
        # Each node weighs its metrics by its user count: the masked weights sum to
        # every user of the dataset.
        assert metrics["users"] == pytest.approx(users, abs=1e-4)
    from secagg_rec.privacy import PrivacyLedger

    for partition in range(NODES):
        ledger = PrivacyLedger(ledger_dir / f"partition-{partition}.sqlite")
        try:
            spent = ledger.epsilon_spent(str(partition))
            entries = ledger.events(str(partition))
        finally:
            ledger.close()
        assert 0 < spent < math.inf
        # One DP-SGD run per round, committed (recorded before the update left).
        assert [e.status for e in entries] == ["committed", "committed"]


def test_example_in_process_with_dp(tmp_path):
    from flower_movielens.client_app import app as client_app
    from flower_movielens.server_app import app as server_app

    config = app_config(
        **{"out-dir": str(tmp_path / "out"), "ledger-dir": str(tmp_path / "ledgers")}
    )
    nodes = [7_000 + i for i in range(NODES)]
    grid = FakeGrid(
        client_app,
        nodes,
        node_config=lambda n: {"partition-id": n - 7_000, "num-partitions": NODES},
        run_config=config,
    )
    sent = []

    def tap(node, reply):
        sent.append(reply.content)
        return reply

    grid.tamper = tap
    server_app(
        grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=config)
    )
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    check_result(result, tmp_path / "ledgers", users=120)
    # Training and evaluation replies: protocol records only (no loss, count or metric).
    assert len(sent) == NODES * 5 * (2 + 2)  # 2 train + 1 val + 1 test rounds
    for content in sent:
        assert set(content.keys()) <= {RECORD, FRAME_RECORD}
        assert not content.metric_records


def test_example_on_ray_simulation(tmp_path):
    pytest.importorskip("ray", reason="Flower's simulation engine needs Ray")
    if not (BIN / "flower-superlink").exists():
        pytest.skip("flower-superlink not found")
    out, ledgers = tmp_path / "out", tmp_path / "ledgers"
    fed = LocalFederation(tmp_path / "simulation", 0, simulation=True)
    try:
        fed.start()
        fed.run(
            EXAMPLE,
            {**SMALL, "out-dir": str(out), "ledger-dir": str(ledgers)},
            federation_config={
                "num-supernodes": NODES,
                "client-resources-num-cpus": 1,
                "init-args-num-cpus": 2,
            },
        )
        try:
            wait_for(lambda: (out / "result.json").exists(), 420, "the example to finish", 1.0)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{fed.diagnostics()}") from None
    finally:
        fed.stop()
    result = json.loads((out / "result.json").read_text())
    check_result(result, ledgers, users=120)
    assert np.isfinite(result["seconds"])
