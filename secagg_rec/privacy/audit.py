"""Audit a privacy ledger: per-client ε, budgets, over-budget flags, ε-vs-rounds plot.

This is what a privacy reviewer runs before signing off a release
(``secagg-rec audit LEDGER``): for every client, the rounds and steps it trained, ε by
its ledger accountant (``"pld"`` unless the budget says otherwise) and by RDP for
comparison, its budget and what remains, and whether it is over. Reservations that
were never committed (a crash between training and upload) count in full.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from secagg_rec.privacy.accountants import _check_delta, get_accountant
from secagg_rec.privacy.events import DPSGDEvent
from secagg_rec.privacy.ledger import PrivacyLedger

__all__ = ["AuditReport", "ClientAudit", "audit_ledger", "epsilon_curve", "plot_epsilon_curves"]


@dataclass(frozen=True)
class ClientAudit:
    """One client's line in the audit.

    Attributes:
        client_id: the client.
        rounds: counted ledger entries (DP-SGD runs).
        steps: total counted steps.
        pending: entries reserved but never committed (counted in full).
        delta: δ at which ε is reported.
        accountant: accountant of ``epsilon`` (the client's budget accountant).
        epsilon: ε by ``accountant``.
        epsilon_rdp: ε by the RDP accountant (looser; for comparison).
        budget: the ε budget checked against (the ledger's, or the override).
        remaining: ``max(0, budget - epsilon)``.
        over_budget: ``epsilon > budget``.
    """

    client_id: str
    rounds: int
    steps: int
    pending: int
    delta: float
    accountant: str
    epsilon: float
    epsilon_rdp: float
    budget: float
    remaining: float
    over_budget: bool


@dataclass(frozen=True)
class AuditReport:
    """All clients' :class:`ClientAudit` lines and a summary."""

    ledger: str
    clients: tuple[ClientAudit, ...]

    @property
    def any_over_budget(self) -> bool:
        return any(c.over_budget for c in self.clients)

    @property
    def max_epsilon(self) -> float | None:
        return max((c.epsilon for c in self.clients), default=None)

    @property
    def median_epsilon(self) -> float | None:
        if not self.clients:
            return None
        return float(statistics.median(c.epsilon for c in self.clients))

    def summary(self) -> dict[str, Any]:
        """Counts, max and median ε, and how many clients are over budget."""
        return {
            "clients": len(self.clients),
            "over_budget": sum(c.over_budget for c in self.clients),
            "pending": sum(c.pending for c in self.clients),
            "max_epsilon": self.max_epsilon,
            "median_epsilon": self.median_epsilon,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "summary": self.summary(),
            "clients": [asdict(c) for c in self.clients],
        }


def audit_ledger(
    ledger: PrivacyLedger,
    *,
    delta: float | None = None,
    budget: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """Audit every client of ``ledger``.

    Args:
        ledger: an open ledger.
        delta: report ε at this δ instead of each client's budget δ.
        budget: flag clients over this ε instead of their own budgets.
        progress: called as ``progress(done, total)`` after each client.

    Raises:
        TypeError, ValueError: bad ``delta`` / ``budget``.
        LedgerError: a damaged ledger.
    """
    if delta is not None:
        delta = _check_delta(delta)
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, (int, float)):
            raise TypeError(f"budget must be a number, got {type(budget).__name__}")
        if math.isnan(budget) or budget < 0:
            raise ValueError(f"budget must be >= 0, got {budget}")
    rdp = get_accountant("rdp")
    lines = []
    clients = ledger.clients()
    for index, client in enumerate(clients):
        own = ledger.get_budget(client)
        entries = ledger.events(client)
        events = [e.event for e in entries]
        at = own.delta if delta is None else delta
        eps = get_accountant(own.accountant).epsilon(events, at)
        limit = own.epsilon if budget is None else float(budget)
        lines.append(
            ClientAudit(
                client_id=client,
                rounds=len(entries),
                steps=sum(e.event.steps for e in entries),
                pending=sum(1 for e in entries if e.status == "reserved"),
                delta=at,
                accountant=own.accountant,
                epsilon=eps,
                epsilon_rdp=rdp.epsilon(events, at),
                budget=limit,
                remaining=max(0.0, limit - eps),
                over_budget=eps > limit,
            )
        )
        if progress is not None:
            progress(index + 1, len(clients))
    return AuditReport(ledger=str(ledger.path), clients=tuple(lines))


def epsilon_curve(
    events: Sequence[DPSGDEvent],
    delta: float,
    accountant: str = "pld",
    *,
    max_points: int = 20,
) -> list[tuple[int, float]]:
    """ε after round k for up to ``max_points`` values of k (always the last round).

    Round k means the first k events composed. Points are spread evenly over the
    rounds so that the cost stays bounded for long histories.

    Raises:
        ValueError: ``max_points < 1``.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    n = len(events)
    if n == 0:
        return []
    if n <= max_points:
        ks = list(range(1, n + 1))
    else:
        ks = sorted({max(1, round(n * j / max_points)) for j in range(1, max_points + 1)})
    acc = get_accountant(accountant)
    return [(k, acc.epsilon(events[:k], delta)) for k in ks]


def plot_epsilon_curves(
    ledger: PrivacyLedger,
    report: AuditReport,
    path: str | Path,
    *,
    max_clients: int = 30,
    max_points: int = 20,
) -> Path:
    """Write a PNG of ε against rounds, one line per client (the ``max_clients`` with
    the largest ε), with each plotted client's budget as a dashed line when budgets
    differ, or one dashed line when they agree.

    Raises:
        ValueError: ``path`` does not end in ``.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ValueError(f"plot path must end in .png, got {out}")
    chosen = sorted(report.clients, key=lambda c: c.epsilon, reverse=True)[:max_clients]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    budgets = {c.budget for c in chosen}
    for line in chosen:
        events = ledger.spent_events(line.client_id)
        curve = epsilon_curve(events, line.delta, line.accountant, max_points=max_points)
        if not curve:
            continue
        xs, ys = zip(*curve, strict=True)
        (drawn,) = ax.plot(
            xs,
            ys,
            "-",
            marker="o" if len(xs) <= 30 else None,
            markersize=3,
            linewidth=1.2,
            label=f"{line.client_id}{' (over)' if line.over_budget else ''}",
        )
        if len(budgets) > 1 and math.isfinite(line.budget):
            ax.axhline(line.budget, color=drawn.get_color(), linestyle="--", linewidth=0.8)
    if len(budgets) == 1:
        (only,) = budgets
        if math.isfinite(only):
            ax.axhline(
                only, color="black", linestyle="--", linewidth=1.0, label=f"budget ε={only:g}"
            )
    deltas = sorted({c.delta for c in chosen})
    delta_text = ", ".join(f"{d:g}" for d in deltas) if deltas else "-"
    shown = f"{len(chosen)} of {len(report.clients)} clients" if report.clients else "no clients"
    ax.set_title(f"ε spent against rounds (δ = {delta_text}; {shown})")
    ax.set_xlabel("round (ledger entries of the client)")
    ax.set_ylabel("ε")
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    if chosen and len(chosen) <= 12:
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
