"""Simulation engine: the same app as the deployment test, on virtual nodes (Ray backend).

A ``flower-superlink --insecure --simulation`` on loopback runs the app of
``deploy_app/`` with ``flwr run --federation-config num-supernodes=...``: Flower's
simulation runtime starts Ray and runs every ClientApp on virtual SuperNodes. Each
round's aggregate must equal the in-memory driver's bit for bit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the simulation test needs flwr (pip install '.[flower]')")
pytest.importorskip(
    "ray", reason="Flower's simulation engine needs Ray: pip install 'flwr[simulation]==1.42.*'"
)

from tests.flower.federation import BIN, LocalFederation
from tests.flower.test_deployment import (
    APP,
    exact_mean,
    node_entries,
    partitions,
    reference,
    wait_done,
)

pytestmark = pytest.mark.slow
VIRTUAL_NODES = 6


@pytest.fixture
def simulation(tmp_path):
    if not (BIN / "flower-superlink").exists():
        pytest.skip("flower-superlink not found")
    fed = LocalFederation(tmp_path / "simulation", 0, simulation=True)
    try:
        fed.start()
        yield fed
    finally:
        fed.stop()


def test_same_app_on_ray_virtual_nodes(simulation, tmp_path):
    out = tmp_path / "out"
    simulation.run(
        APP,
        {"out-dir": str(out), "rounds": 2, "num-nodes": VIRTUAL_NODES, "timeout": 60.0},
        federation_config={
            "num-supernodes": VIRTUAL_NODES,
            "client-resources-num-cpus": 1,
            "init-args-num-cpus": 2,
        },
    )
    wait_done(simulation, out, timeout=300)
    partition_of = partitions(out)
    assert sorted(partition_of.values()) == list(range(VIRTUAL_NODES))
    assert all(e["ray"] for e in node_entries(out))  # every ClientApp ran in a Ray worker
    for index in (0, 1):
        result = json.loads((out / f"round-{index}.json").read_text())
        assert result["ok"], result["error"]
        assert sorted(result["survivors"]) == sorted(partition_of)
        expected, _ = reference(result, partition_of, {})
        assert result["aggregate"] == expected.aggregate.tolist()  # bit for bit
        np.testing.assert_allclose(
            result["mean"], exact_mean(list(range(VIRTUAL_NODES)), index), rtol=0, atol=1e-12
        )
