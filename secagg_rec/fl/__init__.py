"""Federated training: FedAvg over secure aggregation, with optional local DP-SGD.

The entry point is :func:`train_federated` with a :class:`FederatedConfig` (the
options of ``secagg-rec train``); see ``docs/federated.md``. The pieces, for custom
loops: :func:`~secagg_rec.fl.local.local_update` (one client),
:class:`~secagg_rec.fl.batched.BatchedLocalTrainer` (many clients at once),
:mod:`~secagg_rec.fl.vector` (model <-> update vector of shared parameters),
:class:`~secagg_rec.fl.aggregate.SecureAggregator` / ``PlainAggregator`` and
:class:`~secagg_rec.fl.server_opt.ServerOptimizer`.

Importing this package does not import torch; the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BatchedLocalTrainer",
    "ClientUpdate",
    "FederatedConfig",
    "FederatedResult",
    "LocalConfig",
    "PlainAggregator",
    "SecureAggregator",
    "ServerOptimizer",
    "UserStore",
    "local_update",
    "train_federated",
]

_WHERE = {
    "BatchedLocalTrainer": "secagg_rec.fl.batched",
    "ClientUpdate": "secagg_rec.fl.local",
    "FederatedConfig": "secagg_rec.fl.config",
    "FederatedResult": "secagg_rec.fl.trainer",
    "LocalConfig": "secagg_rec.fl.local",
    "PlainAggregator": "secagg_rec.fl.aggregate",
    "SecureAggregator": "secagg_rec.fl.aggregate",
    "ServerOptimizer": "secagg_rec.fl.server_opt",
    "UserStore": "secagg_rec.fl.local",
    "local_update": "secagg_rec.fl.local",
    "train_federated": "secagg_rec.fl.trainer",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'secagg_rec.fl' has no attribute {name!r}")
