"""``secagg-rec privacy``, ``audit`` and ``bench dp`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secagg_rec.cli import main
from secagg_rec.privacy import DPSGDEvent, PrivacyLedger, epsilon
from secagg_rec.privacy.audit import audit_ledger, epsilon_curve


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_privacy_epsilon_prints_the_accountants_value(capsys):
    args = ["--sample-rate", "0.01", "--noise-multiplier", "4", "--steps", "10000"]
    code, out, _ = run(capsys, "privacy", "epsilon", *args, "--delta", "1e-5")
    assert code == 0
    value = epsilon(DPSGDEvent(4.0, 0.01, 10_000), 1e-5)
    assert out.splitlines()[0] == f"epsilon: {value:.6g}"
    code, out, _ = run(
        capsys, "privacy", "epsilon", *args, "--delta", "1e-5", "--accountant", "rdp", "--json"
    )
    data = json.loads(out)
    assert code == 0
    assert data["epsilon"] == epsilon(DPSGDEvent(4.0, 0.01, 10_000), 1e-5, "rdp")
    assert data["accountant"] == "rdp" and data["steps"] == 10_000


def test_privacy_noise_meets_the_target(capsys):
    code, out, _ = run(
        capsys,
        "privacy",
        "noise",
        "--target-epsilon",
        "2",
        "--delta",
        "1e-6",
        "--sample-rate",
        "0.05",
        "--epochs",
        "1",
        "--rounds",
        "10",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["steps"] == 200
    assert 0.98 * 2 <= epsilon(DPSGDEvent(data["noise_multiplier"], 0.05, 200), 1e-6) <= 2
    code, out, _ = run(
        capsys,
        "privacy",
        "noise",
        "--target-epsilon",
        "2",
        "--delta",
        "1e-6",
        "--sample-rate",
        "0.05",
        "--steps",
        "200",
    )
    assert code == 0
    assert out.startswith(f"noise_multiplier: {data['noise_multiplier']:.6g}")


@pytest.mark.parametrize(
    "argv",
    [
        [
            "privacy",
            "epsilon",
            "--sample-rate",
            "1.5",
            "--noise-multiplier",
            "1",
            "--steps",
            "10",
            "--delta",
            "1e-5",
        ],
        [
            "privacy",
            "epsilon",
            "--sample-rate",
            "0.1",
            "--noise-multiplier",
            "1",
            "--steps",
            "10",
            "--delta",
            "2",
        ],
        [
            "privacy",
            "noise",
            "--target-epsilon",
            "-1",
            "--delta",
            "1e-5",
            "--sample-rate",
            "0.1",
            "--steps",
            "10",
        ],
        [
            "privacy",
            "noise",
            "--target-epsilon",
            "1",
            "--delta",
            "1e-5",
            "--sample-rate",
            "0.1",
            "--steps",
            "10",
            "--rounds",
            "3",
        ],
    ],
)
def test_bad_numbers_are_an_error_message_not_a_traceback(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "error:" in err and "Traceback" not in err
    assert out == ""


# ---- audit ------------------------------------------------------------------------------

ROUND = DPSGDEvent(1.2, 0.05, 20)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "privacy.ledger"
    with PrivacyLedger(path) as led:
        for client, rounds in (("a", 3), ("b", 1), ("c", 2)):
            led.set_budget(client, epsilon=10.0, delta=1e-5)
            for r in range(rounds):
                led.commit(led.reserve(client, ROUND, round_id=r))
    return path


def test_audit_passes_when_every_client_is_within_budget(capsys, ledger_path, tmp_path):
    plot = tmp_path / "eps.png"
    code, out, _ = run(capsys, "audit", str(ledger_path), "--plot", str(plot))
    assert code == 0
    assert "clients: 3  over budget: 0" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "OVER" not in out


def test_audit_exits_1_exactly_when_a_client_is_over(capsys, ledger_path):
    three_rounds = epsilon([ROUND] * 3, 1e-5)
    # At exactly the largest spend nobody is over...
    code, out, _ = run(capsys, "audit", str(ledger_path), "--budget", repr(three_rounds), "--json")
    assert code == 0
    assert json.loads(out)["summary"]["over_budget"] == 0
    # ...a hair below it, client "a" is.
    code, out, _ = run(
        capsys, "audit", str(ledger_path), "--budget", repr(three_rounds * (1 - 1e-9)), "--json"
    )
    data = json.loads(out)
    assert code == 1
    assert [c["client_id"] for c in data["clients"] if c["over_budget"]] == ["a"]
    assert data["exit_status"] == 1
    # A client over its own ledger budget (a late record) also fails the audit.
    with PrivacyLedger(ledger_path) as led:
        led.set_budget("b", epsilon=0.01, delta=1e-5)
    code, out, _ = run(capsys, "audit", str(ledger_path))
    assert code == 1
    assert "OVER" in out and "over budget: 1" in out


def test_audit_json_has_both_accountants_and_the_summary(capsys, ledger_path):
    code, out, _ = run(capsys, "audit", str(ledger_path), "--delta", "1e-6", "--json")
    data = json.loads(out)
    assert code == 0
    by_client = {c["client_id"]: c for c in data["clients"]}
    a = by_client["a"]
    assert (a["rounds"], a["steps"], a["delta"]) == (3, 60, 1e-6)
    assert a["epsilon"] == epsilon([ROUND] * 3, 1e-6)
    assert a["epsilon_rdp"] == epsilon([ROUND] * 3, 1e-6, "rdp") >= a["epsilon"]
    assert data["summary"]["max_epsilon"] == a["epsilon"]
    assert data["summary"]["median_epsilon"] == by_client["c"]["epsilon"]


def test_pending_reservations_count_in_full(capsys, tmp_path):
    path = tmp_path / "l.db"
    with PrivacyLedger(path) as led:
        led.set_budget("x", epsilon=10.0, delta=1e-5)
        led.reserve("x", ROUND)  # crashed before commit
    code, out, _ = run(capsys, "audit", str(path), "--json")
    (client,) = json.loads(out)["clients"]
    assert code == 0
    assert client["pending"] == 1 and client["epsilon"] == epsilon(ROUND, 1e-5)


def test_audit_of_a_corrupt_or_missing_ledger_is_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.ledger"
    bad.write_bytes(b"this is not a database" * 100)
    code, _, err = run(capsys, "audit", str(bad))
    assert code == 2 and "not a privacy ledger" in err and "Traceback" not in err
    code, _, err = run(capsys, "audit", str(tmp_path / "missing.ledger"))
    assert code == 2 and "no ledger" in err
    assert not (tmp_path / "missing.ledger").exists()


def test_epsilon_curve_rises_to_the_total(ledger_path):
    with PrivacyLedger(ledger_path) as led:
        events = led.spent_events("a")
        report = audit_ledger(led)
    curve = epsilon_curve(events, 1e-5)
    assert [k for k, _ in curve] == [1, 2, 3]
    values = [v for _, v in curve]
    assert values == sorted(values)
    assert values[-1] == report.clients[0].epsilon
    long = epsilon_curve([ROUND] * 50, 1e-5, max_points=5)
    assert [k for k, _ in long] == [10, 20, 30, 40, 50]


# ---- bench ------------------------------------------------------------------------------


def test_bench_dp_runs_all_variants_in_one_run(capsys):
    code, out, _ = run(
        capsys,
        "bench",
        "dp",
        "--users",
        "20",
        "--items",
        "30",
        "--interactions",
        "600",
        "--factors",
        "4",
        "--batch-size",
        "50",
        "--repeats",
        "1",
        "--hooks-steps",
        "2",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    for model in ("mf", "neumf"):
        variants = data["results"][model]
        assert set(variants) == {
            "non_private",
            "make_private",
            "make_private_inline",
            "opacus_hooks",
            "noise_floor",
        }
        assert variants["noise_floor"]["parameters"] > 0
        assert variants["non_private"]["ratio"] == 1.0
        assert variants["make_private"]["epoch_seconds"] > 0
        assert variants["opacus_hooks"]["scaled_from_steps"] == 2
    assert data["machine"]["torch_threads"] == 1


def test_bench_dp_rejects_unknown_models(capsys):
    code, _, err = run(capsys, "bench", "dp", "--models", "mf,svd")
    assert code == 2 and "models" in err
