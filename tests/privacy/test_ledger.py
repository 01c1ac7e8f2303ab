"""The budget ledger: refuses before overspending, survives crashes and concurrency."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from secagg_rec.errors import BudgetExceededError, LedgerError
from secagg_rec.privacy import DPSGDEvent, PrivacyLedger, epsilon

EVENT = DPSGDEvent(1.0, 0.1, 10)


@pytest.fixture
def ledger(tmp_path: Path):
    with PrivacyLedger(tmp_path / "ledger.db") as led:
        yield led


def test_budget_round_trip_and_unknown_client(ledger):
    budget = ledger.set_budget("alice", epsilon=2.5, delta=1e-6)
    assert ledger.get_budget("alice") == budget
    assert (budget.epsilon, budget.delta, budget.accountant) == (2.5, 1e-6, "pld")
    ledger.set_budget("alice", epsilon=3.0, delta=1e-5, accountant="rdp")
    assert ledger.get_budget("alice").accountant == "rdp"
    assert ledger.clients() == ["alice"]
    with pytest.raises(LedgerError, match="no budget"):
        ledger.get_budget("bob")
    with pytest.raises(LedgerError, match="no budget"):
        ledger.reserve("bob", EVENT)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"epsilon": -1.0, "delta": 1e-5}, ValueError),
        ({"epsilon": float("nan"), "delta": 1e-5}, ValueError),
        ({"epsilon": 1.0, "delta": 1.0}, ValueError),
        ({"epsilon": "1", "delta": 1e-5}, TypeError),
        ({"epsilon": 1.0, "delta": 1e-5, "accountant": "nope"}, ValueError),
    ],
)
def test_bad_budgets_are_rejected(ledger, kwargs, error):
    with pytest.raises(error):
        ledger.set_budget("alice", **kwargs)
    assert ledger.clients() == []


def test_the_run_that_fits_exactly_is_allowed_and_the_next_refused(ledger):
    exact = epsilon([EVENT, EVENT], 1e-5)
    ledger.set_budget("alice", epsilon=exact, delta=1e-5)
    ledger.commit(ledger.reserve("alice", EVENT, round_id=1))
    ledger.commit(ledger.reserve("alice", EVENT, round_id=2))
    summary = ledger.summary("alice")
    assert summary.epsilon_spent == exact
    assert summary.remaining == 0.0
    assert not summary.over_budget
    with pytest.raises(BudgetExceededError, match="refused before training"):
        ledger.reserve("alice", EVENT, round_id=3)
    # Nothing was written for the refused run.
    assert [e.round_id for e in ledger.events("alice")] == ["1", "2"]


def test_a_run_just_over_the_budget_is_refused(ledger):
    exact = epsilon([EVENT, EVENT], 1e-5)
    ledger.set_budget("alice", epsilon=exact * (1 - 1e-9), delta=1e-5)
    ledger.reserve("alice", EVENT)
    with pytest.raises(BudgetExceededError):
        ledger.check("alice", EVENT)
    with pytest.raises(BudgetExceededError):
        ledger.reserve("alice", EVENT)
    assert len(ledger.events("alice")) == 1


def test_check_is_read_only_and_returns_the_epsilon_after(ledger):
    ledger.set_budget("alice", epsilon=100.0, delta=1e-5)
    assert ledger.check("alice", EVENT) == epsilon(EVENT, 1e-5)
    assert ledger.events("alice") == []


def test_a_reservation_counts_in_full_until_committed(ledger):
    ledger.set_budget("alice", epsilon=100.0, delta=1e-5)
    reservation = ledger.reserve("alice", EVENT)
    assert ledger.epsilon_spent("alice") == epsilon(EVENT, 1e-5)
    assert ledger.summary("alice").pending == 1
    entry = ledger.commit(reservation, steps=4)
    assert (entry.status, entry.event.steps, entry.planned_steps) == ("committed", 4, 10)
    assert ledger.epsilon_spent("alice") == epsilon(EVENT.steps_with(steps=4), 1e-5)
    with pytest.raises(LedgerError, match="already committed"):
        ledger.commit(reservation)
    with pytest.raises(ValueError):
        ledger.commit(ledger.reserve("alice", EVENT), steps=11)


def test_cancel_drops_a_run_that_took_no_step(ledger):
    ledger.set_budget("alice", epsilon=100.0, delta=1e-5)
    reservation = ledger.reserve("alice", EVENT)
    ledger.cancel(reservation)
    assert ledger.epsilon_spent("alice") == 0.0
    assert ledger.events("alice") == []
    assert ledger.events("alice", include_cancelled=True)[0].status == "cancelled"
    with pytest.raises(LedgerError):
        ledger.cancel(reservation)


def test_record_never_refuses_a_run_that_already_happened(ledger):
    ledger.set_budget("alice", epsilon=0.1, delta=1e-5)
    ledger.record("alice", EVENT, round_id="late")
    summary = ledger.summary("alice")
    assert summary.over_budget
    assert summary.remaining == 0.0


def test_unlimited_budget_records_spend(ledger):
    ledger.set_budget("alice", epsilon=math.inf, delta=1e-5)
    for _ in range(3):
        ledger.commit(ledger.reserve("alice", EVENT))
    assert ledger.summary("alice").steps == 30
    assert ledger.epsilon_spent("alice") == epsilon([EVENT] * 3, 1e-5)


def test_the_ledger_persists_across_reopening(tmp_path):
    path = tmp_path / "sub" / "ledger.db"
    with PrivacyLedger(path) as led:
        led.set_budget("alice", epsilon=5.0, delta=1e-5, accountant="rdp")
        led.commit(led.reserve("alice", EVENT, round_id=7))
    with PrivacyLedger(path, create=False) as led:
        (entry,) = led.events("alice")
        assert entry.round_id == "7" and entry.event == EVENT
        assert led.get_budget("alice").accountant == "rdp"
        con = sqlite3.connect(path)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        con.close()


def test_missing_file_without_create(tmp_path):
    with pytest.raises(FileNotFoundError):
        PrivacyLedger(tmp_path / "nope.db", create=False)


def test_garbage_file_is_a_ledger_error(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(LedgerError, match="not a privacy ledger"):
        PrivacyLedger(path)


def test_foreign_sqlite_database_is_a_ledger_error(tmp_path):
    path = tmp_path / "foreign.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE songs (title TEXT)")
    con.commit()
    con.close()
    with pytest.raises(LedgerError, match="another application"):
        PrivacyLedger(path)


def test_corrupted_ledger_is_a_ledger_error(tmp_path):
    path = tmp_path / "ledger.db"
    with PrivacyLedger(path) as led:
        led.set_budget("alice", epsilon=5.0, delta=1e-5)
        for r in range(50):
            led.record("alice", EVENT, round_id=r)
    data = bytearray(path.read_bytes())
    # Keep the header (so it still looks like SQLite), wreck the pages after it.
    data[1024:] = b"\xff" * (len(data) - 1024)
    path.write_bytes(bytes(data))
    for leftover in tmp_path.glob("ledger.db-*"):
        leftover.unlink()
    with pytest.raises(LedgerError), PrivacyLedger(path) as led:
        led.summary("alice")


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "ledger.db"
    PrivacyLedger(path).close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    with pytest.raises(LedgerError, match="newer"):
        PrivacyLedger(path)


def test_bad_arguments(ledger):
    ledger.set_budget("alice", epsilon=5.0, delta=1e-5)
    with pytest.raises(TypeError):
        ledger.reserve("alice", (1.0, 0.1, 10))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ledger.reserve(3, EVENT)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ledger.reserve("", EVENT)
    with pytest.raises(TypeError):
        ledger.reserve("alice", EVENT, round_id=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PrivacyLedger(42)  # type: ignore[arg-type]


# ---- several processes -------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from secagg_rec.errors import BudgetExceededError
    from secagg_rec.privacy import DPSGDEvent, PrivacyLedger

    path, go, tries, tag = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    event = DPSGDEvent(1.0, 0.1, 10)
    granted = 0
    with PrivacyLedger(path) as ledger:
        while not go.exists():
            time.sleep(0.01)
        for i in range(tries):
            try:
                reservation = ledger.reserve("shared", event, round_id=f"{tag}-{i}")
            except BudgetExceededError:
                continue
            ledger.commit(reservation)
            granted += 1
    print(granted)
    """
)


def _writers(tmp_path: Path, tries: int) -> list[int]:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "ledger.db"), str(go), str(tries), tag],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    time.sleep(0.5)
    go.touch()
    counts = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        counts.append(int(out.strip()))
    return counts


@pytest.mark.slow
def test_two_concurrent_writers_leave_the_right_total(tmp_path):
    with PrivacyLedger(tmp_path / "ledger.db") as led:
        led.set_budget("shared", epsilon=math.inf, delta=1e-5, accountant="rdp")
    counts = _writers(tmp_path, tries=25)
    assert counts == [25, 25]
    with PrivacyLedger(tmp_path / "ledger.db") as led:
        entries = led.events("shared")
        assert len(entries) == 50
        assert {e.round_id for e in entries} == {f"{t}-{i}" for t in "ab" for i in range(25)}
        assert all(e.status == "committed" for e in entries)
        assert led.summary("shared").steps == 500


@pytest.mark.slow
def test_two_racing_writers_never_overspend_together(tmp_path):
    allowed = 7
    with PrivacyLedger(tmp_path / "ledger.db") as led:
        led.set_budget("shared", epsilon=epsilon([EVENT] * allowed, 1e-5), delta=1e-5)
    counts = _writers(tmp_path, tries=6)
    assert sum(counts) == allowed
    with PrivacyLedger(tmp_path / "ledger.db") as led:
        assert len(led.events("shared")) == allowed
        assert not led.summary("shared").over_budget


TRAIN_THEN_WAIT = textwrap.dedent(
    """
    import sys, time
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from secagg_rec.privacy import PrivacyLedger, make_private

    path, commit = sys.argv[1], sys.argv[2] == "commit"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 1))
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    ledger = PrivacyLedger(path)
    private = make_private(
        model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(data, batch_size=16),
        noise_multiplier=1.0, max_grad_norm=1.0, epochs=2,
        ledger=ledger, client_id="victim", round_id=1,
    )
    model, optimizer, loader = private
    for _ in range(2):
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    if commit:
        private.commit()
    print("TRAINED", private.steps_taken, flush=True)
    time.sleep(120)  # "uploading": killed here
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("commit", [False, True])
def test_sigkill_between_training_and_upload_keeps_the_spend(tmp_path, commit):
    path = tmp_path / "ledger.db"
    with PrivacyLedger(path) as led:
        led.set_budget("victim", epsilon=100.0, delta=1e-5)
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAIN_THEN_WAIT, str(path), "commit" if commit else "no"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("TRAINED"), proc.stderr.read()  # type: ignore[union-attr]
        steps = int(line.split()[1])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with PrivacyLedger(path) as led:
        (entry,) = led.events("victim")
        assert entry.planned_steps == 8  # 2 epochs x 4 batches
        assert steps == 8
        assert entry.status == ("committed" if commit else "reserved")
        assert entry.event.steps == 8
        spent = led.epsilon_spent("victim")
    assert spent == epsilon(DPSGDEvent(1.0, 0.25, 8), 1e-5) > 0
