"""Sweep mode: grid, CSV/JSON schema, failure rows, plots, CLI."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pytest

from secagg_rec.cli import main
from secagg_rec.sim.cost_model import NetworkModel
from secagg_rec.sim.sweep import (
    FAILURE_COLUMNS,
    SCHEMA,
    SWEEP_COLUMNS,
    SweepSpec,
    grid_points,
    run_sweep,
    write_sweep,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    spec = SweepSpec(
        clients=(5, 8),
        dims=(16, 40),
        dropouts=(0.0, 0.25),
        neighbors=("full", 3, "auto"),  # k=3 with n=5 is impossible: an invalid point
        network=NetworkModel(uplink=1e6, downlink=1e7, latency=0.02),
        failure_trials=200,
        failure_dropouts=(0.0, 0.2, 0.4),
    )
    result = run_sweep(spec)
    out = tmp_path_factory.mktemp("sweep")
    files = write_sweep(result, out, spec=spec, command=["secagg-rec", "simulate", "..."])
    return SimpleNamespace(spec=spec, result=result, out=out, files=files)


def test_grid_order_and_validation():
    spec = SweepSpec(clients=(10, 20), dims=(5,), dropouts=(0.0, 0.1), neighbors=("full",))
    points = grid_points(spec)
    assert spec.size == 4 == len(points)
    assert [(p.clients, p.dropout) for p in points] == [(10, 0.0), (10, 0.1), (20, 0.0),
                                                       (20, 0.1)]
    with pytest.raises(ValueError, match="twice"):
        SweepSpec(clients=(10, 10), dims=(5,))
    with pytest.raises(ValueError, match="at least one"):
        SweepSpec(clients=(), dims=(5,))
    with pytest.raises(ValueError, match="--dropout must be in"):
        SweepSpec(clients=(10,), dims=(5,), dropouts=(1.5,))
    with pytest.raises(ValueError, match="--clients must be"):
        SweepSpec(clients=(1,), dims=(5,))
    with pytest.raises(ValueError, match="--repeats"):
        SweepSpec(clients=(10,), dims=(5,), repeats=0)


def test_repeats_walk_the_grid_both_ways_and_take_medians():
    spec = SweepSpec(clients=(4,), dims=(3,), dropouts=(0.0, 0.25), neighbors=("full", 3),
                     failure_trials=0, repeats=3)
    seen = []
    result = run_sweep(spec, on_point=lambda i, total, p: seen.append((i, total, p.dropout,
                                                                       p.neighbors)))
    assert [s[0] for s in seen] == list(range(12)) and {s[1] for s in seen} == {12}
    forward = [(d, k) for d in (0.0, 0.25) for k in ("full", 3)]
    assert [s[2:] for s in seen] == forward + forward[::-1] + forward
    assert all(r["repeats"] == 3 for r in result.rows) and result.all_ok


def test_csv_schema_and_rows(swept):
    with open(swept.files["csv"], newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == SWEEP_COLUMNS
        rows = list(reader)
    assert len(rows) == swept.spec.size == 24
    status = {(r["clients"], r["neighbors_spec"], r["dropout"], r["dim"]): r["status"]
              for r in rows}
    for key, value in status.items():
        if key[:2] == ("5", "3"):  # no 3-regular graph on 5 clients
            assert value == "invalid"
        elif key[:3] == ("8", "3", "0.25"):  # 2 of 8 drop: some survivor keeps 2 < t = 3
            assert value == "aborted"
        else:
            assert value == "ok", key
    for r in rows:
        if r["status"] == "invalid":
            assert "odd k" in r["reason"] and r["client_seconds_mean"] == ""
            continue
        if r["status"] == "aborted":
            assert "live holders" in r["reason"] and r["max_abs_error"] == ""
            continue
        assert int(r["survivors"]) == int(r["clients"]) - int(r["dropped"])
        assert 0 <= float(r["max_abs_error"]) <= float(r["error_bound"])
        assert float(r["bytes_up_per_client"]) > 4 * int(r["dim"]) * 0.7
        assert r["graph"] == ("full" if int(r["neighbors"]) == int(r["clients"]) - 1
                              else "secagg+")
        per_stage_up = sum(float(r[f"{s}_bytes_up_per_client"]) for s in
                           ("advertise", "share", "masked", "consistency", "unmask"))
        assert per_stage_up >= float(r["bytes_up_per_client"])  # per-stage: answering only
        assert float(r["est_round_seconds"]) >= float(r["est_compute_only_seconds"]) > 0


def test_json_schema_matches_csv(swept):
    doc = json.loads((swept.out / "sweep.json").read_text())
    assert doc["schema"] == SCHEMA
    assert set(doc) >= {"schema", "created", "machine", "command", "grid", "network", "columns",
                        "rows", "failure", "files"}
    assert doc["columns"] == list(SWEEP_COLUMNS)
    assert doc["grid"]["clients"] == [5, 8] and doc["grid"]["neighbors"] == ["full", "3", "auto"]
    assert doc["machine"]["cpus"] >= 1 and doc["machine"]["date"]
    assert len(doc["rows"]) == 24
    for row in doc["rows"]:
        assert set(SWEEP_COLUMNS) <= set(row)
        if row["status"] == "ok":
            assert [s["name"] for s in row["stages"]] == [
                "advertise", "share", "masked", "consistency", "unmask"]
    with open(swept.files["csv"], newline="") as fh:
        first = next(csv.DictReader(fh))
    assert float(first["server_seconds"]) == pytest.approx(doc["rows"][0]["server_seconds"])


def test_failure_rows_cover_every_k_t_and_dropout(swept):
    with open(swept.files["failure_csv"], newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == FAILURE_COLUMNS
        rows = list(reader)
    combos = {(r["clients"], r["neighbors"], r["threshold"]) for r in rows}
    ran = {(str(r["clients"]), str(r["neighbors"]), str(r["threshold"]))
           for r in swept.result.rows if r["status"] != "invalid"}
    assert combos == ran
    dropouts = sorted({float(r["dropout"]) for r in rows})
    assert dropouts == [0.0, 0.2, 0.25, 0.4]  # the analysis axis plus the grid's own
    for r in rows:
        assert 0 <= float(r["ci_low"]) <= float(r["rate"]) <= float(r["ci_high"]) <= 1
        assert int(r["trials"]) == 200


def test_plots_are_pngs(swept):
    for name in ("client_compute_vs_n.png", "server_compute_vs_dropout.png",
                 "bytes_per_client_vs_n.png", "failure_rate_vs_dropout.png"):
        data = (swept.out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name


def test_cli_sweep_mode(tmp_path, capsys):
    code = main(["simulate", "--clients", "6,8", "--dim", "1e1", "--neighbors", "full,2",
                 "--dropout", "0,0.2", "--failure-trials", "20", "--no-plots", "--repeats", "2",
                 "--out", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] is True
    assert (out["points"], out["ok_points"], out["aborted_points"], out["invalid_points"]) == (
        8, 8, 0, 0)
    assert (tmp_path / "sweep.csv").is_file() and (tmp_path / "sweep.json").is_file()
    assert not (tmp_path / "client_compute_vs_n.png").exists()
    assert all(r["repeats"] == 2 for r in out["rows"])
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert doc["command"][:6] == ["secagg-rec", "simulate", "--clients", "6,8", "--dim", "10"]


def test_cli_single_run_with_network_estimate_and_workers(capsys):
    code = main(["simulate", "--clients", "12", "--dim", "50", "--neighbors", "4",
                 "--threshold", "3", "--dropout", "0.1", "--workers", "2",
                 "--uplink", "lognormal:5Mbps:0.5", "--downlink", "20Mbps",
                 "--latency", "uniform:10ms:50ms", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] and out["workers"] == 2
    est = out["network_estimate"]
    assert est["samples"] == 200 and est["p10"] <= est["seconds"] <= est["p90"]
    assert out["peak_rss_workers_mb"] > 0


@pytest.mark.parametrize(("args", "message"), [
    (["--uplink", "5Mbps"], "both --uplink and --downlink"),
    (["--uplink", "5", "--downlink", "5Mbps"], "cannot read bandwidth"),
    (["--clients", "4,x"], "expected a number"),
])
def test_cli_bad_network_and_lists_are_errors_not_tracebacks(args, message, capsys):
    base = {"--clients": "4", "--dim": "4"}
    argv = ["simulate"]
    for k, v in base.items():
        if k not in args:
            argv += [k, v]
    try:
        code = main(argv + args)
    except SystemExit as exc:  # argparse type errors exit 2
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
