"""Local differential privacy for federated training: DP-SGD, accounting, budgets.

Public API (stable; see ``docs/privacy.md``):

* :func:`make_private` — one call that turns the user's model, optimizer and loader
  into DP-SGD ones (Opacus ghost clipping, Poisson sampling, Gaussian noise) and
  returns a :class:`PrivateTraining` that unpacks to ``(module, optimizer, loader)``.
* :class:`DPSGDEvent` — a frozen record of one DP-SGD run (σ, q, steps).
* :func:`epsilon` / :func:`within_budget` — ε of a sequence of events
  (accountants ``"pld"`` default, ``"prv"``, ``"rdp"``).
* :func:`calibrate_noise` — (target ε, δ, q, steps or epochs × rounds) → σ.
* :class:`PrivacyLedger` — per-client budgets and spends in SQLite (WAL).

Importing this package does not import torch or opacus; :func:`make_private` does.
"""

from __future__ import annotations

from secagg_rec.privacy.accountants import (
    ACCOUNTANT_NAMES,
    DEFAULT_ACCOUNTANT,
    Accountant,
    PLDAccountant,
    PRVAccountant,
    RDPAccountant,
    epsilon,
    get_accountant,
    within_budget,
)
from secagg_rec.privacy.calibration import calibrate_noise, planned_steps, steps_per_epoch
from secagg_rec.privacy.events import DPSGDEvent, merge_events
from secagg_rec.privacy.ledger import (
    Budget,
    ClientSpend,
    LedgerEntry,
    PrivacyLedger,
    Reservation,
)
from secagg_rec.privacy.opacus_facade import (
    GRAD_SAMPLE_MODES,
    PrivateTraining,
    close_private,
    fix_module,
    make_private,
    module_problems,
)

__all__ = [
    "ACCOUNTANT_NAMES",
    "DEFAULT_ACCOUNTANT",
    "GRAD_SAMPLE_MODES",
    "Accountant",
    "Budget",
    "ClientSpend",
    "DPSGDEvent",
    "LedgerEntry",
    "PLDAccountant",
    "PRVAccountant",
    "PrivacyLedger",
    "PrivateTraining",
    "RDPAccountant",
    "Reservation",
    "calibrate_noise",
    "close_private",
    "epsilon",
    "fix_module",
    "get_accountant",
    "make_private",
    "merge_events",
    "module_problems",
    "planned_steps",
    "steps_per_epoch",
    "within_budget",
]
