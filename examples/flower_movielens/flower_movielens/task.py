"""What server and clients share: data, split, partition, model, local training.

Everything here is a deterministic function of the run config (data, seed, model), so
the ServerApp and every ClientApp build the same item catalogue, the same split and
the same initial model without exchanging any of it. A node holds partition
``partition-id`` of ``num-partitions`` (its node config): a silo of users, whose
private rows (user embeddings) never leave it; only the shared (item-side) parameters
are averaged, through secure aggregation.

Local training reuses :func:`secagg_rec.fl.local.local_update` (non-private) and
:func:`secagg_rec.privacy.make_private` with a :class:`~secagg_rec.privacy.PrivacyLedger`
(private), the same recipe as ``secagg-rec train``'s DP clients: the spend is committed
to the ledger before the update is returned, so it is recorded before anything leaves
the node.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from secagg_rec.fl.local import LocalConfig, UserStore, local_update
from secagg_rec.fl.vector import load_shared_vector, shared_vector
from secagg_rec.rec.models import RecommenderModel

__all__ = ["LocalResult", "Task", "TaskKey", "load_task", "private_update"]


@dataclass(frozen=True)
class TaskKey:
    """The run-config fields that fix data, split and model."""

    data: str
    seed: int
    model: str
    factors: int
    synthetic_users: int
    synthetic_items: int

    @classmethod
    def from_run_config(cls, cfg: dict[str, Any]) -> TaskKey:
        return cls(
            data=str(cfg["data"]),
            seed=int(cfg["seed"]),
            model=str(cfg["model"]),
            factors=int(cfg["factors"]),
            synthetic_users=int(cfg.get("synthetic-users", 1000)),
            synthetic_items=int(cfg.get("synthetic-items", 1000)),
        )


class Task:
    """Dataset, leave-one-out split and model factory for one run config."""

    def __init__(self, key: TaskKey) -> None:
        from secagg_rec.rec.data import load_dataset, make_synthetic
        from secagg_rec.rec.splits import leave_one_out_split

        self.key = key
        if key.data == "synthetic":
            dataset = make_synthetic(
                n_users=key.synthetic_users, n_items=key.synthetic_items, seed=key.seed
            )
        else:
            dataset = load_dataset(key.data, seed=key.seed)
        self.split = leave_one_out_split(dataset, seed=key.seed)

    @property
    def n_users(self) -> int:
        return int(self.split.n_users)

    def new_model(self) -> RecommenderModel:
        """The initial model (the same on every node and on the server)."""
        from secagg_rec.rec.models import build_model

        options = {} if self.key.model == "logreg" else {"factors": self.key.factors}
        return build_model(
            self.key.model, self.split.n_users, self.split.n_items, seed=self.key.seed, **options
        )

    def shared_arrays(self, model: RecommenderModel) -> ArrayRecord:
        """The model's shared parameters as an ArrayRecord (names and shapes kept)."""
        params = dict(model.named_parameters())
        return ArrayRecord(
            {
                name: Array(params[name].detach().numpy().copy())
                for name in model.shared_parameter_names()
            }
        )

    @lru_cache(maxsize=8)  # noqa: B019 - one Task per process and config
    def users_of(self, partition: int, partitions: int) -> np.ndarray:
        """Users held by node ``partition`` of ``partitions`` (disjoint silos)."""
        from secagg_rec.rec.partition import cross_silo_partition

        if not 0 <= partition < partitions:
            raise ValueError(f"partition-id {partition} outside [0, {partitions})")
        return cross_silo_partition(self.n_users, partitions, seed=self.key.seed).users_of(
            partition
        )


@lru_cache(maxsize=4)
def load_task(key: TaskKey) -> Task:
    """The :class:`Task` for ``key``, built once per process (Ray actors reuse it)."""
    return Task(key)


@dataclass
class LocalResult:
    """One node's round: the update of the shared parameters and its example count."""

    delta: np.ndarray
    examples: int
    loss: float
    seconds: float


def train_local(
    model: RecommenderModel,
    global_vector: np.ndarray,
    store: UserStore,
    users: np.ndarray,
    examples: Any,
    config: LocalConfig,
    *,
    round_index: int,
) -> LocalResult:
    """Non-private local training (``secagg_rec.fl.local.local_update``)."""
    generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
    upd = local_update(
        model, global_vector, store, users, examples, config, client=0, generator=generator
    )
    return LocalResult(upd.delta, upd.examples, upd.loss, upd.seconds)


def private_update(
    model: RecommenderModel,
    global_vector: np.ndarray,
    store: UserStore,
    users: np.ndarray,
    examples: Any,
    config: LocalConfig,
    *,
    ledger_path: Path,
    client_id: str,
    round_index: int,
    noise_multiplier: float,
    max_grad_norm: float,
    delta: float,
    epsilon_budget: float,
) -> LocalResult:
    """DP-SGD local training; the ledger reserves the spend before training and commits
    it before the update is returned.

    Raises:
        secagg_rec.errors.BudgetExceededError: this round would overspend the node's
            budget (nothing is trained).
    """
    from torch import nn
    from torch.utils.data import DataLoader

    from secagg_rec.privacy import PrivacyLedger, make_private

    t0 = time.perf_counter()
    ledger_path.parent.mkdir(parents=True, exist_ok=True)
    ledger = PrivacyLedger(ledger_path)
    try:
        budget = None
        if client_id in ledger.clients():
            budget = ledger.get_budget(client_id)
        if budget is None or budget.epsilon != epsilon_budget or budget.delta != delta:
            ledger.set_budget(client_id, epsilon=epsilon_budget, delta=delta)
        load_shared_vector(model, global_vector)
        store.load_into(model, users)
        model.train()
        optimizer = config.make_optimizer(list(model.parameters()))
        loader = DataLoader(examples.tensor_dataset(), batch_size=config.batch_size)
        private = make_private(
            model,
            optimizer,
            loader,
            max_grad_norm=max_grad_norm,
            noise_multiplier=noise_multiplier,
            target_delta=delta,
            epochs=config.epochs,
            criterion=nn.BCEWithLogitsLoss(),
            ledger=ledger,
            client_id=client_id,
            round_id=round_index,
        )  # BudgetExceededError here: nothing was trained
        total, count = 0.0, 0
        with private:
            popt, ploader, criterion = private.optimizer, private.data_loader, private.criterion
            for _ in range(config.epochs):
                total, count = 0.0, 0
                for u, i, y in ploader:
                    popt.zero_grad()
                    if len(y) == 0:
                        popt.step()  # an empty Poisson batch still takes a noisy step
                        continue
                    loss = criterion(model(u, i), y)
                    loss.backward()
                    popt.step()
                    total += float(loss.detach()) * len(y)
                    count += len(y)
            private.commit()  # durable before the update can leave the node
    finally:
        ledger.close()
    store.save_from(model, users)
    delta_vec = shared_vector(model) - global_vector
    return LocalResult(delta_vec, len(examples), total / max(count, 1), time.perf_counter() - t0)


def default_ledger_dir() -> Path:
    return Path(tempfile.gettempdir()) / "secagg-rec-flower-ledgers"


def epsilon_spent(ledger_path: Path, client_id: str) -> float:
    """ε this node has spent so far (0 if it never trained privately)."""
    from secagg_rec.privacy import PrivacyLedger

    if not ledger_path.exists():
        return 0.0
    ledger = PrivacyLedger(ledger_path)
    try:
        if client_id not in ledger.clients():
            return 0.0
        value = ledger.epsilon_spent(client_id)
        return float(value) if math.isfinite(value) else math.inf
    finally:
        ledger.close()
