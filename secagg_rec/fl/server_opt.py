"""Server optimizers: how the global shared vector moves given the mean client update.

The mean update ``delta`` (weighted FedAvg of ``local - global``) is treated as a
pseudo-gradient step, as in Reddi et al., *Adaptive Federated Optimization* (ICLR 2021):

* ``fedavg``: ``x <- x + lr * delta`` (``lr = 1`` is plain FedAvg).
* ``fedavgm``: server momentum, ``m <- beta1 * m + delta``, ``x <- x + lr * m``.
* ``fedadam``: ``m <- b1 m + (1-b1) delta``, ``v <- b2 v + (1-b2) delta^2``,
  ``x <- x + lr * m / (sqrt(v) + tau)`` (no bias correction, as in the paper).
  Adaptive per-coordinate steps undo the dilution that plain averaging suffers when
  most clients leave most item rows untouched.

State is plain numpy arrays, so it checkpoints with the rest of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LR_SCHEDULES", "SERVER_OPTIMIZERS", "ServerOptimizer", "lr_scale"]

LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")


def lr_scale(schedule: str, round_index: int, rounds: int) -> float:
    """Multiplier of the server learning rate in round ``round_index`` (1-based).

    ``constant``: 1. ``cosine``: ``0.5 (1 + cos(pi (r - 1) / rounds))``, from 1 down to
    nearly 0 at the last round, which lets the model settle instead of oscillating.

    Raises:
        ValueError: unknown schedule.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (round_index - 1) / max(rounds, 1)))
    raise ValueError(f"server lr schedule must be one of {LR_SCHEDULES}, got {schedule!r}")

SERVER_OPTIMIZERS: tuple[str, ...] = ("fedavg", "fedavgm", "fedadam")


@dataclass
class ServerOptimizer:
    """Applies mean updates to the global vector.

    Args:
        name: one of :data:`SERVER_OPTIMIZERS`.
        lr: server learning rate, > 0.
        beta1, beta2: moment decay rates in ``[0, 1)``.
        tau: FedAdam's adaptivity floor, > 0.

    Raises:
        ValueError: unknown name or out-of-range hyperparameters.
    """

    name: str = "fedadam"
    lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    m: np.ndarray | None = field(default=None, repr=False)
    v: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.name not in SERVER_OPTIMIZERS:
            raise ValueError(
                f"server optimizer must be one of {SERVER_OPTIMIZERS}, got {self.name!r}"
            )
        if not self.lr > 0 or not self.tau > 0:
            raise ValueError("server lr and tau must be > 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError("beta1 and beta2 must be in [0, 1)")

    def step(self, x: np.ndarray, delta: np.ndarray, lr_scale: float = 1.0) -> np.ndarray:
        """Return the new global vector (``x`` is not modified).

        ``lr_scale`` multiplies the learning rate for this step (a schedule).

        Raises:
            ValueError: shapes differ or ``delta`` is not finite.
        """
        if x.shape != delta.shape:
            raise ValueError(f"update shape {delta.shape} != model shape {x.shape}")
        if not np.all(np.isfinite(delta)):
            raise ValueError("mean update contains NaN or infinity")
        d = delta.astype(np.float64)
        lr = self.lr * lr_scale
        if self.name == "fedavg":
            return (x + lr * d).astype(x.dtype)
        if self.m is None:
            self.m = np.zeros_like(d)
        if self.name == "fedavgm":
            self.m = self.beta1 * self.m + d
            return (x + lr * self.m).astype(x.dtype)
        if self.v is None:
            self.v = np.zeros_like(d)
        self.m = self.beta1 * self.m + (1 - self.beta1) * d
        self.v = self.beta2 * self.v + (1 - self.beta2) * d * d
        return (x + lr * self.m / (np.sqrt(self.v) + self.tau)).astype(x.dtype)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Moment arrays for checkpoints (empty before the first step)."""
        out = {}
        if self.m is not None:
            out["m"] = self.m
        if self.v is not None:
            out["v"] = self.v
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.m = state.get("m")
        self.v = state.get("v")
