"""Assigning users to federated clients.

* **Cross-device**: every user is a client (client ``c`` holds user ``c``); the user's
  private parameters live on their own device.
* **Cross-silo**: ``n_silos`` organisations (e.g. 10 platforms) each hold a disjoint set
  of users and train over all of them; every user belongs to exactly one silo. Users
  are shuffled by seed and dealt out so silo sizes differ by at most one, or in
  proportion to ``weights`` (e.g. a few large platforms and many small ones).

A :class:`Partition` says only who holds whom; building each client's local examples is
:func:`secagg_rec.rec.sampling.training_examples` with ``users=partition.users_of(c)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PARTITION_KINDS", "Partition", "cross_device_partition", "cross_silo_partition"]

#: The two kinds of partition.
PARTITION_KINDS: tuple[str, ...] = ("cross-device", "cross-silo")


@dataclass(frozen=True, eq=False)
class Partition:
    """A disjoint assignment of users to clients.

    Attributes:
        kind: ``"cross-device"`` or ``"cross-silo"``.
        user_to_client: int64 ``[n_users]``, the client of each user.
        client_users: one sorted int64 array of users per client.
    """

    kind: str
    user_to_client: np.ndarray
    client_users: tuple[np.ndarray, ...]

    @property
    def n_clients(self) -> int:
        """Number of clients."""
        return len(self.client_users)

    @property
    def n_users(self) -> int:
        """Number of users."""
        return int(self.user_to_client.size)

    def users_of(self, client: int) -> np.ndarray:
        """Sorted users held by ``client``. Raises IndexError if out of range."""
        if not 0 <= client < self.n_clients:
            raise IndexError(f"client {client} is outside [0, {self.n_clients})")
        return self.client_users[client]

    def client_sizes(self) -> np.ndarray:
        """int64 ``[n_clients]``: users per client."""
        return np.array([u.size for u in self.client_users], dtype=np.int64)


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def cross_device_partition(n_users: int) -> Partition:
    """Every user is a client: client ``c`` holds exactly user ``c``.

    Raises:
        TypeError, ValueError: ``n_users`` not an int >= 1.
    """
    n_users = _check_int("n_users", n_users, 1)
    users = np.arange(n_users, dtype=np.int64)
    return Partition(
        kind="cross-device",
        user_to_client=users.copy(),
        client_users=tuple(users[i : i + 1] for i in range(n_users)),
    )


def cross_silo_partition(
    n_users: int,
    n_silos: int,
    *,
    seed: int = 0,
    weights: Sequence[float] | None = None,
) -> Partition:
    """Deal users into ``n_silos`` disjoint, non-empty silos, shuffled by ``seed``.

    Args:
        n_users: >= ``n_silos``.
        n_silos: >= 1.
        seed: >= 0.
        weights: optional relative silo sizes (``n_silos`` positive numbers). Sizes are
            ``weights / sum(weights) * n_users`` rounded by largest remainder, every
            silo getting at least one user. Default: sizes differ by at most one.

    Raises:
        TypeError: non-int counts.
        ValueError: ``n_silos > n_users``, negative seed, or bad ``weights``.
    """
    n_silos = _check_int("n_silos", n_silos, 1)
    n_users = _check_int("n_users", n_users, n_silos)
    seed = _check_int("seed", seed, 0)
    if weights is None:
        sizes = np.full(n_silos, n_users // n_silos, dtype=np.int64)
        sizes[: n_users % n_silos] += 1
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n_silos,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(f"weights must be {n_silos} finite positive numbers")
        spare = n_users - n_silos  # one user per silo first, the rest by weight
        exact = w / w.sum() * spare
        sizes = np.floor(exact).astype(np.int64)
        remainder_order = np.argsort(-(exact - sizes), kind="stable")
        sizes[remainder_order[: spare - int(sizes.sum())]] += 1
        sizes += 1
    order = np.random.default_rng([seed, 0x5110]).permutation(n_users)
    bounds = np.r_[0, np.cumsum(sizes)]
    client_users = tuple(np.sort(order[bounds[c] : bounds[c + 1]]) for c in range(n_silos))
    user_to_client = np.empty(n_users, dtype=np.int64)
    for c, users in enumerate(client_users):
        user_to_client[users] = c
    return Partition(kind="cross-silo", user_to_client=user_to_client, client_users=client_users)
