"""Flower 1.42's SecAgg+ against ours (skipped without the ``bench`` extra)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("flwr", reason="flwr not installed (pip install 'secagg-rec[bench]')")

from secagg_rec.cli import main
from secagg_rec.sim.flower_compare import (
    FlowerCase,
    behaviour_cases,
    run_flower_secaggplus,
    run_ours,
)


def test_same_round_in_both_libraries():
    case = FlowerCase(name="small", clients=10, dim=50, neighbors=4, threshold=3,
                      dropout=0.2, drop_stage="consistency", seed=1)
    ours, flower = run_ours(case), run_flower_secaggplus(case)
    assert ours["ok"] and flower["ok"], (ours, flower)
    assert ours["survivors"] == flower["survivors"] == 10  # dropped after uploading
    assert ours["max_abs_error_mean"] < 1e-7
    assert flower["max_abs_error_mean"] < 2 / (1 << 22) * 2  # Flower's 2**22 levels
    assert ours["bytes_up_per_client"] > 50 * 4 and flower["bytes_up_per_client"] > 50 * 8
    assert flower["client_errors"] == 0 and flower["error"] is None


def test_behaviour_differences():
    drop, wrap, even = behaviour_cases(clients=10, dim=20)
    # a client vanishing during key sharing: we finish; Flower's unmask step halts
    ours, flower = run_ours(drop), run_flower_secaggplus(drop)
    assert ours["ok"] and ours["survivors"] == 9
    assert not flower["ok"] and "Not enough shares" in flower["error"]
    assert any("KeyError" in e for e in flower["client_error_examples"])
    # n x quantization range beyond the modulus: we refuse; Flower wraps silently
    ours, flower = run_ours(wrap), run_flower_secaggplus(wrap)
    assert not ours["ok"] and ours["refused"] and "could wrap" in ours["error"]
    assert flower["ok"] and flower["max_abs_error_mean"] > 0.1
    # k = 5 (Flower num_shares = 6): we run the odd-degree graph; Flower's clients crash
    ours, flower = run_ours(even), run_flower_secaggplus(even)
    assert ours["ok"]
    assert not flower["ok"] and flower["client_errors"] == 10
    assert any("IndexError" in e for e in flower["client_error_examples"])
    assert any("should be odd" in line for line in flower["log"])


def test_bench_flower_cli_json(capsys):
    code = main(["bench", "flower", "--clients", "10", "--dim", "20", "--neighbors", "5",
                 "--threshold", "3", "--no-behaviour", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["flwr"].startswith("1.42")
    names = [r["case"]["neighbors"] for r in out["comparison"]]
    assert names == [5, 4]  # odd k also runs k - 1, which Flower supports
    odd, even = out["comparison"]
    assert odd["ours"]["ok"] and not odd["flower"]["ok"]
    assert even["ours"]["ok"] and even["flower"]["ok"]
    assert even["work_ratio_flower_over_ours"] > 0
