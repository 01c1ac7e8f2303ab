"""One client's local training: shared parameters in, update vector out.

A client holds one user (cross-device) or many (cross-silo). It loads the global
shared vector and its users' private rows into a working model, trains ``epochs``
passes over its positives plus freshly sampled negatives with binary cross-entropy,
writes its users' rows back to its private store, and returns
``update = local_shared - global_shared``. The update never contains a user row: it
is built only from :func:`~secagg_rec.fl.vector.shared_vector`.

Private (DP-SGD) local training lives with the trainer
(:class:`secagg_rec.fl.trainer._PrivateClients`, through
:func:`~secagg_rec.privacy.make_private`); this module knows nothing of DP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from secagg_rec.fl.vector import load_shared_vector, shared_vector
from secagg_rec.rec.models import RecommenderModel
from secagg_rec.rec.sampling import TrainingExamples

__all__ = ["ClientUpdate", "LocalConfig", "UserStore", "local_update"]

LOCAL_OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True, kw_only=True)
class LocalConfig:
    """Hyperparameters of local training.

    Attributes:
        epochs: passes over the local examples per round moving every parameter, >= 0
            (0 only with ``user_epochs``: a pure refit of the user rows).
        user_epochs: passes *before* those in which only the client's private (user)
            parameters move, >= 0. Fitting the user rows to the current item rows first
            (as federated collaborative filtering does) makes the item update that
            follows far more useful.
        batch_size: examples per step, >= 1 (for DP: the expected Poisson batch).
        lr: local learning rate, > 0.
        optimizer: ``"sgd"`` or ``"adam"`` (fresh state every round).
        weight_decay: L2 penalty on the parameters touched, >= 0.
        negatives_per_positive: sampled negatives per positive, >= 0.
    """

    epochs: int = 1
    user_epochs: int = 0
    batch_size: int = 32
    lr: float = 0.5
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    negatives_per_positive: int = 4

    def __post_init__(self) -> None:
        for name, low in (("epochs", 0), ("batch_size", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"local {name} must be an int >= {low}, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"local lr must be > 0, got {self.lr!r}")
        if self.optimizer not in LOCAL_OPTIMIZERS:
            raise ValueError(f"local optimizer must be one of {LOCAL_OPTIMIZERS}")
        if isinstance(self.user_epochs, bool) or not isinstance(self.user_epochs, int) or (
            self.user_epochs < 0
        ):
            raise ValueError(f"user_epochs must be an int >= 0, got {self.user_epochs!r}")
        if self.epochs + self.user_epochs < 1:
            raise ValueError("local training needs at least one epoch (epochs + user_epochs)")
        if self.weight_decay < 0 or self.negatives_per_positive < 0:
            raise ValueError("weight_decay and negatives_per_positive must be >= 0")

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """A fresh local optimizer over ``params``."""
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, weight_decay=self.weight_decay)


class UserStore:
    """The private per-user rows of every client, kept "on the clients".

    In a simulation all clients live in one process; this store is the union of their
    devices. Rows are read only by the client owning the user and never aggregated.

    Args:
        model: a model whose private parameters give the initial rows.
    """

    def __init__(self, model: RecommenderModel) -> None:
        params = dict(model.named_parameters())
        self.names = model.private_parameter_names()
        self.rows = {n: params[n].detach().clone() for n in self.names}

    def load_into(self, model: RecommenderModel, users: np.ndarray) -> None:
        """Copy ``users``' rows into ``model``'s private parameters."""
        idx = torch.as_tensor(users, dtype=torch.int64)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n in self.names:
                params[n][idx] = self.rows[n][idx]

    def save_from(self, model: RecommenderModel, users: np.ndarray) -> None:
        """Copy ``users``' rows back from ``model`` (after local training)."""
        idx = torch.as_tensor(users, dtype=torch.int64)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n in self.names:
                self.rows[n][idx] = params[n].detach()[idx]

    def load_all_into(self, model: RecommenderModel) -> None:
        """Every user's rows into ``model`` (for evaluation, as if each user scored
        locally with their own row)."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n in self.names:
                params[n].copy_(self.rows[n])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: t.clone() for n, t in self.rows.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.names):
            raise ValueError(f"user store needs exactly {sorted(self.names)}")
        self.rows = {n: state[n].clone() for n in self.names}


@dataclass
class ClientUpdate:
    """What one client produced in one round.

    Attributes:
        client: client id (dense, 0-based).
        delta: float32 ``[shared_dim]``, ``local - global`` shared parameters.
        examples: number of local training examples (the FedAvg weight under
            ``weighting="examples"``).
        loss: mean training BCE over the last local epoch.
        seconds: wall time of local training.
        epsilon: the client's cumulative epsilon after this round (private runs).
    """

    client: int
    delta: np.ndarray
    examples: int
    loss: float
    seconds: float
    epsilon: float | None = None


def local_update(
    model: RecommenderModel,
    global_vector: np.ndarray,
    store: UserStore,
    users: np.ndarray,
    examples: TrainingExamples,
    config: LocalConfig,
    *,
    client: int,
    generator: torch.Generator,
) -> ClientUpdate:
    """Train one client non-privately and return its update.

    Args:
        model: a working model (overwritten: shared part from ``global_vector``,
            private rows of ``users`` from ``store``).
        global_vector: the current global shared vector.
        store: private rows; ``users``' rows are updated in place.
        users: the client's users.
        examples: the client's local examples (positives and negatives).
        config: local hyperparameters.
        client: the client's id (recorded in the result).
        generator: shuffles the examples (seeded per client and round by the caller).
    """
    t0 = time.perf_counter()
    load_shared_vector(model, global_vector)
    store.load_into(model, users)
    u, i, y = examples.tensors()
    n = len(y)
    opt = config.make_optimizer(list(model.parameters()))
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    shared = model.shared_parameters()
    last = 0.0
    for epoch in range(config.user_epochs + config.epochs):
        user_only = epoch < config.user_epochs
        perm = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, config.batch_size):
            b = perm[start : start + config.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(u[b], i[b]), y[b])
            loss.backward()
            if user_only:  # optimizers skip parameters without a gradient
                for p in shared:
                    p.grad = None
            opt.step()
            total += float(loss.detach()) * len(b)
        last = total / max(n, 1)
    store.save_from(model, users)
    delta = shared_vector(model) - global_vector
    return ClientUpdate(
        client=client, delta=delta, examples=n, loss=last, seconds=time.perf_counter() - t0
    )
