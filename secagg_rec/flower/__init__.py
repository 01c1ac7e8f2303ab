"""Run this library's secure aggregation on Flower (``flwr==1.42.*``).

Our protocol, codec and crypto (not Flower's SecAgg+) over Flower's Message API:

- server: :class:`SecAggWorkflow` drives a :class:`~secagg_rec.secagg.ServerSession`
  over a ServerApp's ``Grid``, stage by stage, with a timeout per stage;
- client: :func:`make_secagg_mod` wraps an ordinary ClientApp train function (or
  :func:`make_secagg_handler` takes a function returning ``(vector, weight)``) and runs
  a :class:`~secagg_rec.secagg.ClientSession` across Flower messages.

The weight travels inside the masked vector, never in clear. How the pieces travel is
in :mod:`secagg_rec.flower.wire` and :mod:`secagg_rec.flower.setup`; how a client's
session survives between messages is in :mod:`secagg_rec.flower.client_state`;
deployment and the threat model over Flower are in ``docs/flower.md``.

Importing this package needs Flower; ``import secagg_rec`` does not.
"""

from __future__ import annotations

try:
    import flwr  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "secagg_rec.flower needs Flower: pip install 'secagg-rec[flower]' (flwr==1.42.*)"
    ) from exc

from secagg_rec.flower.arrays import flatten, unflatten, vector_size
from secagg_rec.flower.client import (
    UpdateFn,
    handle_secagg_message,
    make_secagg_handler,
    make_secagg_mod,
    update_from_reply,
)
from secagg_rec.flower.exchange import ExchangeResult, exchange
from secagg_rec.flower.settings import DEFAULT_TIMEOUTS, ClientPolicy, SecAggSettings
from secagg_rec.flower.setup import RoundSetup, setup_from_record, setup_to_record
from secagg_rec.flower.wire import SECAGG_ERROR_CODE
from secagg_rec.flower.workflow import (
    SecAggRoundResult,
    SecAggWorkflow,
    StageReport,
    wait_for_nodes,
)

__all__ = [
    "DEFAULT_TIMEOUTS",
    "SECAGG_ERROR_CODE",
    "ClientPolicy",
    "ExchangeResult",
    "RoundSetup",
    "SecAggRoundResult",
    "SecAggSettings",
    "SecAggWorkflow",
    "StageReport",
    "UpdateFn",
    "exchange",
    "flatten",
    "handle_secagg_message",
    "make_secagg_handler",
    "make_secagg_mod",
    "setup_from_record",
    "setup_to_record",
    "unflatten",
    "update_from_reply",
    "vector_size",
    "wait_for_nodes",
]
