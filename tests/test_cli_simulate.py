"""`secagg-rec simulate` and `secagg-rec bench masking` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

from secagg_rec.cli import main

REQUIRED = {
    "ok", "clients", "survivors", "neighbors", "threshold", "max_abs_error",
    "client_seconds_mean", "client_seconds_max", "client_seconds_total", "server_seconds",
    "bytes_up_per_client", "bytes_down_per_client", "stages",
}


def _run(capsys, *args: str) -> tuple[int, dict]:
    code = main(["simulate", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_simulate_json_reports_an_exact_round(capsys):
    code, out = _run(capsys, "--clients", "20", "--dim", "1000", "--neighbors", "8",
                     "--threshold", "4", "--dropout", "0.1", "--drop-stage", "masked",
                     "--seed", "3")
    assert code == 0
    assert set(out) >= REQUIRED
    assert out["ok"] is True and out["clients"] == 20 and out["survivors"] == 18
    assert out["neighbors"] == 8 and out["threshold"] == 4
    assert 0 <= out["max_abs_error"] <= out["error_bound"]
    assert [s["name"] for s in out["stages"]] == [
        "advertise", "share", "masked", "consistency", "unmask"]
    assert out["bytes_up_per_client"] > 1000 * 4  # at least the masked vector
    assert out["client_seconds_max"] <= out["client_seconds_total"]


def test_simulate_auto_neighbors_and_authenticated(capsys):
    code, out = _run(capsys, "--clients", "40", "--dim", "10", "--neighbors", "auto",
                     "--dropout", "0.1", "--drop-stage", "unmask", "--authenticated")
    assert code == 0 and out["ok"]
    assert out["graph"] == "secagg+" and out["neighbors"] < 39


def test_simulate_below_threshold_reports_and_exits_1(capsys):
    code, out = _run(capsys, "--clients", "10", "--dim", "5", "--threshold", "8",
                     "--dropout", "0.5", "--drop-stage", "share")
    assert code == 1
    assert out["ok"] is False and "threshold" in out["reason"]
    assert out["max_abs_error"] is None


def test_simulate_bad_arguments_give_a_message_not_a_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "secagg_rec", "simulate", "--clients", "1", "--dim", "5"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert "--clients must be an int >= 2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_masking_json(capsys):
    code = main(["bench", "masking", "--dim", "20000", "--seeds", "2", "--repeats", "1",
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["mask_gbps"] > 0 and out["aes_ctr_gbps"] > 0
    assert abs(out["ratio"] - out["mask_gbps"] / out["aes_ctr_gbps"]) < 1e-12
