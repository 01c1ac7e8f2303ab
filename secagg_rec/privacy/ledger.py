"""A persistent per-client privacy budget ledger (SQLite, WAL mode).

Every DP-SGD run a client makes is one row: noise multiplier, sample rate, steps, round
id and times. The ledger holds each client's budget (ε, δ, accountant) and refuses a
planned run that would take ε past it, *before* any training happens.

Lifecycle of one round (what :func:`~secagg_rec.privacy.make_private` does for you)::

    ledger = PrivacyLedger("client-17.ledger")
    ledger.set_budget("u17", epsilon=2.0, delta=1e-6)       # once
    r = ledger.reserve("u17", DPSGDEvent(1.1, 0.05, 40), round_id=3)
    #   ^ raises BudgetExceededError if spent + this run > 2.0; nothing is trained.
    #     The row is written *now*, with the planned steps, and counts as spent.
    ... train at most 40 steps ...
    ledger.commit(r, steps=40)       # actual steps (<= planned); before the upload
    ... upload the update ...

Because the reservation is durable before the first step, a crash anywhere between
training and upload (even SIGKILL) leaves the spend recorded at its planned size; a
commit can only lower it to the steps actually taken. ``cancel`` drops a reservation
for a run that took no step at all.

Concurrency: every write is one ``BEGIN IMMEDIATE`` transaction, and the budget check
and the insert happen inside it, so two processes reserving against one client can
never both squeeze under the budget. ``synchronous=FULL`` makes a commit durable when
the call returns.

Errors: a file that is not SQLite, is corrupt, or is some other application's SQLite
database raises :class:`~secagg_rec.errors.LedgerError` naming the file; a refused run
raises :class:`~secagg_rec.errors.BudgetExceededError`.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secagg_rec.errors import BudgetExceededError, LedgerError
from secagg_rec.privacy.accountants import (
    DEFAULT_ACCOUNTANT,
    _check_delta,
    get_accountant,
)
from secagg_rec.privacy.events import DPSGDEvent

__all__ = [
    "Budget",
    "ClientSpend",
    "LedgerEntry",
    "PrivacyLedger",
    "Reservation",
]

#: ``PRAGMA application_id`` of a ledger file: ASCII "SAPL" (secagg privacy ledger).
APPLICATION_ID = 0x5341504C
SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE budgets (
    client_id  TEXT PRIMARY KEY,
    epsilon    REAL NOT NULL CHECK (epsilon >= 0),
    delta      REAL NOT NULL CHECK (delta > 0 AND delta < 1),
    accountant TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id        TEXT NOT NULL REFERENCES budgets (client_id),
    round_id         TEXT,
    noise_multiplier REAL NOT NULL CHECK (noise_multiplier >= 0),
    sample_rate      REAL NOT NULL CHECK (sample_rate > 0 AND sample_rate <= 1),
    planned_steps    INTEGER NOT NULL CHECK (planned_steps >= 0),
    steps            INTEGER NOT NULL CHECK (steps >= 0 AND steps <= planned_steps),
    status           TEXT NOT NULL CHECK (status IN ('reserved', 'committed', 'cancelled')),
    reserved_at      REAL NOT NULL,
    committed_at     REAL
);
CREATE INDEX events_by_client ON events (client_id, id);
"""

_EXPECTED_TABLES = {"meta", "budgets", "events"}


@dataclass(frozen=True)
class Budget:
    """A client's privacy budget.

    Attributes:
        epsilon: ε budget, ``>= 0``.
        delta: δ in ``(0, 1)`` at which ε is measured.
        accountant: accountant name used for every check of this client.
    """

    epsilon: float
    delta: float
    accountant: str


@dataclass(frozen=True)
class LedgerEntry:
    """One DP-SGD run as recorded.

    Attributes:
        entry_id: row id (increasing in time of reservation).
        client_id: whose data was used.
        round_id: the caller's round label, or ``None``.
        event: the run, with ``steps`` = steps counted as spent (planned steps while
            ``status == "reserved"``, actual steps once committed).
        planned_steps: steps reserved before training.
        status: ``"reserved"`` (counts as spent in full), ``"committed"`` (counts
            ``event.steps``) or ``"cancelled"`` (no step was taken; counts nothing).
        reserved_at, committed_at: POSIX times (seconds); ``committed_at`` is ``None``
            until committed.
    """

    entry_id: int
    client_id: str
    round_id: str | None
    event: DPSGDEvent
    planned_steps: int
    status: str
    reserved_at: float
    committed_at: float | None

    @property
    def counts(self) -> bool:
        """Whether this entry counts towards the spend."""
        return self.status != "cancelled"


@dataclass(frozen=True)
class Reservation:
    """A planned run the ledger has accepted and already counts as spent."""

    entry_id: int
    client_id: str
    round_id: str | None
    event: DPSGDEvent


@dataclass(frozen=True)
class ClientSpend:
    """A client's standing: budget, ε spent (by the client's accountant) and remaining.

    Attributes:
        client_id: the client.
        budget: its :class:`Budget`.
        epsilon_spent: ε of every counted entry composed, at ``budget.delta``.
        remaining: ``max(0, budget.epsilon - epsilon_spent)``.
        rounds: number of counted entries (one per DP-SGD run).
        steps: total counted steps.
        pending: entries still ``"reserved"`` (trained or crashed, never committed).
        over_budget: ``epsilon_spent > budget.epsilon``.
    """

    client_id: str
    budget: Budget
    epsilon_spent: float
    remaining: float
    rounds: int
    steps: int
    pending: int
    over_budget: bool


def _check_client_id(client_id: object) -> str:
    if not isinstance(client_id, str):
        raise TypeError(f"client_id must be a str, got {type(client_id).__name__}")
    if not client_id:
        raise ValueError("client_id must be a non-empty string")
    return client_id


def _round_label(round_id: object) -> str | None:
    if round_id is None:
        return None
    if isinstance(round_id, bool) or not isinstance(round_id, (str, int)):
        raise TypeError(f"round_id must be a str, an int or None, got {type(round_id).__name__}")
    return str(round_id)


class PrivacyLedger:
    """Per-client DP budgets and spends in one SQLite file.

    Args:
        path: the ledger file. Created (with its parent directory) when missing and
            ``create`` is true.
        create: allow creating a new ledger (default ``True``); with ``False`` a
            missing file raises :class:`FileNotFoundError`.
        timeout: seconds to wait for another process's write lock (default 60).
        clock: returns POSIX seconds; injectable for tests (default ``time.time``).

    Raises:
        FileNotFoundError: ``path`` missing and ``create`` is false.
        LedgerError: the file is not SQLite, is corrupt, belongs to another
            application, or was written by a newer schema version.

    A ledger is a context manager; :meth:`close` releases the file. One instance must
    not be shared between threads; open one per process or thread instead.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        timeout: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or path, got {type(path).__name__}")
        if not (isinstance(timeout, (int, float)) and timeout >= 0):
            raise ValueError(f"timeout must be a number >= 0, got {timeout!r}")
        self.path = Path(path)
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        exists = self.path.exists()
        if not exists and not create:
            raise FileNotFoundError(f"no ledger at {self.path}")
        if exists:
            self._check_header()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._errors("open"):
            self._conn = sqlite3.connect(
                str(self.path), timeout=float(timeout), isolation_level=None
            )
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._initialise(create=create)

    # -- opening -------------------------------------------------------------------

    def _check_header(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot read ledger: {exc}") from None
        if head and head != _SQLITE_MAGIC:
            raise LedgerError(
                f"{self.path}: not a privacy ledger (not an SQLite file; corrupt or foreign)"
            )

    def _initialise(self, *, create: bool) -> None:
        conn = self._db
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id == 0:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if tables:
                raise LedgerError(
                    f"{self.path}: not a privacy ledger (an SQLite database of another "
                    f"application, tables: {', '.join(sorted(tables))})"
                )
            if not create:
                raise LedgerError(f"{self.path}: empty file, not a privacy ledger")
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have created it while we waited for the lock.
                if conn.execute("PRAGMA application_id").fetchone()[0] == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('format', ?), ('created_at', ?)",
                        ("secagg-rec privacy ledger", repr(self._clock())),
                    )
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            app_id = APPLICATION_ID
        if app_id != APPLICATION_ID:
            raise LedgerError(
                f"{self.path}: not a privacy ledger (SQLite application_id {app_id:#x})"
            )
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"{self.path}: ledger schema {version} is newer than this library "
                f"understands ({SCHEMA_VERSION}); upgrade secagg-rec"
            )
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables >= _EXPECTED_TABLES:
            raise LedgerError(
                f"{self.path}: damaged ledger, missing tables "
                f"{', '.join(sorted(_EXPECTED_TABLES - tables))}"
            )
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise LedgerError(f"{self.path}: corrupt ledger ({check})")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"{self.path}: cannot switch ledger to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(f"{self.path}: ledger is closed")
        return self._conn

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: cannot {what} ledger: {exc}") from None

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; rolled back on any exception."""
        conn = self._db
        with self._errors(what):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> PrivacyLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrivacyLedger({str(self.path)!r})"

    # -- budgets -------------------------------------------------------------------

    def set_budget(
        self,
        client_id: str,
        *,
        epsilon: float,
        delta: float,
        accountant: str = DEFAULT_ACCOUNTANT,
    ) -> Budget:
        """Set (or change) a client's budget.

        Args:
            client_id: non-empty string.
            epsilon: ε budget ``>= 0``; ``math.inf`` records spend without a limit.
            delta: δ in ``(0, 1)``.
            accountant: accountant name used for this client's checks (default
                ``"pld"``).

        Returns:
            The stored :class:`Budget`. Lowering a budget below what is already spent
            is allowed; the client is then over budget and every further run refused.

        Raises:
            TypeError, ValueError: bad arguments.
        """
        client_id = _check_client_id(client_id)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
            raise TypeError(f"epsilon must be a number, got {type(epsilon).__name__}")
        if math.isnan(epsilon) or epsilon < 0:
            raise ValueError(f"epsilon must be >= 0 (math.inf: no limit), got {epsilon}")
        delta = _check_delta(delta)
        name = get_accountant(accountant).name  # validates the name
        if not isinstance(accountant, str):
            raise TypeError("accountant must be given by name so the ledger can store it")
        with self._write("write") as conn:
            conn.execute(
                "INSERT INTO budgets (client_id, epsilon, delta, accountant, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET "
                "epsilon = excluded.epsilon, delta = excluded.delta, "
                "accountant = excluded.accountant, updated_at = excluded.updated_at",
                (client_id, float(epsilon), delta, name, self._clock()),
            )
        return Budget(float(epsilon), delta, name)

    def get_budget(self, client_id: str) -> Budget:
        """The client's :class:`Budget`.

        Raises:
            LedgerError: no budget was set for ``client_id``.
        """
        client_id = _check_client_id(client_id)
        with self._errors("read"):
            row = self._db.execute(
                "SELECT epsilon, delta, accountant FROM budgets WHERE client_id = ?",
                (client_id,),
            ).fetchone()
        if row is None:
            raise LedgerError(
                f"{self.path}: no budget set for client {client_id!r}; call set_budget first"
            )
        return self._budget_from_row(row)

    def _budget_from_row(self, row: tuple[Any, ...]) -> Budget:
        epsilon, delta, accountant = row
        try:
            get_accountant(accountant)
            return Budget(float(epsilon), float(delta), str(accountant))
        except (TypeError, ValueError) as exc:
            raise LedgerError(f"{self.path}: damaged budget row: {exc}") from None

    def clients(self) -> list[str]:
        """Every client with a budget, sorted."""
        with self._errors("read"):
            rows = self._db.execute("SELECT client_id FROM budgets ORDER BY client_id").fetchall()
        return [r[0] for r in rows]

    # -- events --------------------------------------------------------------------

    def events(
        self, client_id: str | None = None, *, include_cancelled: bool = False
    ) -> list[LedgerEntry]:
        """Entries in reservation order, for one client or all.

        Raises:
            LedgerError: a row that does not describe a valid event (damaged file).
        """
        query = (
            "SELECT id, client_id, round_id, noise_multiplier, sample_rate, planned_steps, "
            "steps, status, reserved_at, committed_at FROM events"
        )
        conds, args = [], []
        if client_id is not None:
            conds.append("client_id = ?")
            args.append(_check_client_id(client_id))
        if not include_cancelled:
            conds.append("status != 'cancelled'")
        if conds:
            query += " WHERE " + " AND ".join(conds)
        query += " ORDER BY id"
        with self._errors("read"):
            rows = self._db.execute(query, args).fetchall()
        return [self._entry_from_row(r) for r in rows]

    def _entry_from_row(self, row: tuple[Any, ...]) -> LedgerEntry:
        (entry_id, client_id, round_id, sigma, q, planned, steps, status, t_res, t_com) = row
        try:
            event = DPSGDEvent(float(sigma), float(q), int(steps))
        except (TypeError, ValueError) as exc:
            raise LedgerError(f"{self.path}: damaged event row {entry_id}: {exc}") from None
        return LedgerEntry(
            entry_id=int(entry_id),
            client_id=str(client_id),
            round_id=None if round_id is None else str(round_id),
            event=event,
            planned_steps=int(planned),
            status=str(status),
            reserved_at=float(t_res),
            committed_at=None if t_com is None else float(t_com),
        )

    def spent_events(self, client_id: str) -> tuple[DPSGDEvent, ...]:
        """The events counted towards ``client_id``'s spend, in order."""
        return tuple(e.event for e in self.events(client_id))

    def epsilon_spent(
        self,
        client_id: str,
        *,
        delta: float | None = None,
        accountant: str | None = None,
    ) -> float:
        """ε spent by ``client_id`` at ``delta`` (default: the budget's δ) by
        ``accountant`` (default: the budget's accountant).

        Raises:
            LedgerError: unknown client or damaged file.
        """
        budget = self.get_budget(client_id)
        acc = get_accountant(accountant or budget.accountant)
        return acc.epsilon(self.spent_events(client_id), budget.delta if delta is None else delta)

    def remaining(self, client_id: str) -> float:
        """``max(0, budget ε - spent ε)`` for ``client_id``."""
        return self.summary(client_id).remaining

    def summary(self, client_id: str) -> ClientSpend:
        """The client's :class:`ClientSpend` (by its own budget's δ and accountant)."""
        budget = self.get_budget(client_id)
        entries = self.events(client_id)
        spent = get_accountant(budget.accountant).epsilon([e.event for e in entries], budget.delta)
        return ClientSpend(
            client_id=client_id,
            budget=budget,
            epsilon_spent=spent,
            remaining=max(0.0, budget.epsilon - spent),
            rounds=len(entries),
            steps=sum(e.event.steps for e in entries),
            pending=sum(1 for e in entries if e.status == "reserved"),
            over_budget=spent > budget.epsilon,
        )

    def check(self, client_id: str, event: DPSGDEvent) -> float:
        """ε the client would have spent after ``event``; raises if over budget.

        Read-only: another process may reserve in between. Use :meth:`reserve` to
        check and claim atomically.

        Raises:
            BudgetExceededError: spent + ``event`` would exceed the budget.
            LedgerError: unknown client or damaged file.
        """
        client_id = _check_client_id(client_id)
        if not isinstance(event, DPSGDEvent):
            raise TypeError(f"event must be a DPSGDEvent, got {type(event).__name__}")
        budget = self.get_budget(client_id)
        spent = self.spent_events(client_id)
        self._check_fits(client_id, budget, spent, event)
        return get_accountant(budget.accountant).epsilon((*spent, event), budget.delta)

    def _check_fits(
        self,
        client_id: str,
        budget: Budget,
        spent: tuple[DPSGDEvent, ...],
        event: DPSGDEvent,
    ) -> None:
        acc = get_accountant(budget.accountant)
        planned = (*spent, event)
        if acc.within_budget(planned, budget.delta, budget.epsilon):
            return
        after = acc.epsilon(planned, budget.delta)
        before = acc.epsilon(spent, budget.delta)
        raise BudgetExceededError(
            f"client {client_id!r}: a run of {event.steps} steps (σ={event.noise_multiplier:g}, "
            f"q={event.sample_rate:g}) would bring ε to {after:.4g} at δ={budget.delta:g} "
            f"({budget.accountant}), over the budget ε={budget.epsilon:g} "
            f"(already spent {before:.4g}); refused before training"
        )

    def reserve(
        self, client_id: str, event: DPSGDEvent, *, round_id: str | int | None = None
    ) -> Reservation:
        """Check ``event`` against the budget and record it as spent, atomically.

        Args:
            client_id: a client with a budget.
            event: the planned run (``steps`` = the most steps it may take).
            round_id: the caller's round label (str or int), stored as text.

        Returns:
            A :class:`Reservation` to :meth:`commit` (or :meth:`cancel`) later. Until
            then the planned steps count in full.

        Raises:
            BudgetExceededError: it does not fit; nothing is written.
            LedgerError: unknown client or damaged file.
        """
        client_id = _check_client_id(client_id)
        if not isinstance(event, DPSGDEvent):
            raise TypeError(f"event must be a DPSGDEvent, got {type(event).__name__}")
        label = _round_label(round_id)
        with self._write("write") as conn:
            budget = self.get_budget(client_id)
            spent = self.spent_events(client_id)
            self._check_fits(client_id, budget, spent, event)
            cur = conn.execute(
                "INSERT INTO events (client_id, round_id, noise_multiplier, sample_rate, "
                "planned_steps, steps, status, reserved_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'reserved', ?)",
                (
                    client_id,
                    label,
                    event.noise_multiplier,
                    event.sample_rate,
                    event.steps,
                    event.steps,
                    self._clock(),
                ),
            )
            entry_id = int(cur.lastrowid or 0)
        return Reservation(entry_id, client_id, label, event)

    def commit(self, reservation: Reservation, *, steps: int | None = None) -> LedgerEntry:
        """Record the steps a reserved run actually took (durable on return).

        Args:
            reservation: from :meth:`reserve`.
            steps: actual steps, ``0 <= steps <= planned`` (default: the planned).

        Returns:
            The committed :class:`LedgerEntry`.

        Raises:
            ValueError: ``steps`` out of range.
            LedgerError: the reservation is unknown, already committed or cancelled.
        """
        if not isinstance(reservation, Reservation):
            raise TypeError(f"expected a Reservation, got {type(reservation).__name__}")
        planned = reservation.event.steps
        actual = planned if steps is None else steps
        if isinstance(actual, bool) or not isinstance(actual, int):
            raise TypeError(f"steps must be an int, got {type(actual).__name__}")
        if not 0 <= actual <= planned:
            raise ValueError(f"steps must be in [0, {planned}] (the reserved steps), got {actual}")
        with self._write("write") as conn:
            self._expect_reserved(conn, reservation)
            conn.execute(
                "UPDATE events SET steps = ?, status = 'committed', committed_at = ? WHERE id = ?",
                (actual, self._clock(), reservation.entry_id),
            )
        return self.entry(reservation.entry_id)

    def cancel(self, reservation: Reservation) -> None:
        """Drop a reservation whose run took no step at all.

        Raises:
            LedgerError: unknown, committed or already cancelled.
        """
        if not isinstance(reservation, Reservation):
            raise TypeError(f"expected a Reservation, got {type(reservation).__name__}")
        with self._write("write") as conn:
            self._expect_reserved(conn, reservation)
            conn.execute(
                "UPDATE events SET steps = 0, status = 'cancelled', committed_at = ? WHERE id = ?",
                (self._clock(), reservation.entry_id),
            )

    def _expect_reserved(self, conn: sqlite3.Connection, reservation: Reservation) -> None:
        row = conn.execute(
            "SELECT client_id, status FROM events WHERE id = ?", (reservation.entry_id,)
        ).fetchone()
        if row is None or row[0] != reservation.client_id:
            raise LedgerError(
                f"{self.path}: no reservation {reservation.entry_id} for client "
                f"{reservation.client_id!r}"
            )
        if row[1] != "reserved":
            raise LedgerError(
                f"{self.path}: reservation {reservation.entry_id} is already {row[1]}"
            )

    def entry(self, entry_id: int) -> LedgerEntry:
        """The entry with row id ``entry_id`` (any status).

        Raises:
            LedgerError: no such entry.
        """
        with self._errors("read"):
            row = self._db.execute(
                "SELECT id, client_id, round_id, noise_multiplier, sample_rate, planned_steps, "
                "steps, status, reserved_at, committed_at FROM events WHERE id = ?",
                (entry_id,),
            ).fetchone()
        if row is None:
            raise LedgerError(f"{self.path}: no entry {entry_id}")
        return self._entry_from_row(row)

    def record(
        self, client_id: str, event: DPSGDEvent, *, round_id: str | int | None = None
    ) -> LedgerEntry:
        """Record a run that already happened (committed at once, never refused).

        Use this to log spend made outside :meth:`reserve`; a run that has happened
        must be recorded even if it overspent, so the audit can flag it.

        Raises:
            LedgerError: unknown client or damaged file.
        """
        client_id = _check_client_id(client_id)
        if not isinstance(event, DPSGDEvent):
            raise TypeError(f"event must be a DPSGDEvent, got {type(event).__name__}")
        label = _round_label(round_id)
        with self._write("write") as conn:
            self.get_budget(client_id)
            now = self._clock()
            cur = conn.execute(
                "INSERT INTO events (client_id, round_id, noise_multiplier, sample_rate, "
                "planned_steps, steps, status, reserved_at, committed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'committed', ?, ?)",
                (
                    client_id,
                    label,
                    event.noise_multiplier,
                    event.sample_rate,
                    event.steps,
                    event.steps,
                    now,
                    now,
                ),
            )
            entry_id = int(cur.lastrowid or 0)
        return self.entry(entry_id)
