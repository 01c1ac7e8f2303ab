"""Round configuration shared by the server and every client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Literal

from secagg_rec.crypto.prg import MAX_BITS
from secagg_rec.secagg.graph import NeighborGraph

__all__ = ["SecAggConfig"]

_U32_MAX = 0xFFFFFFFF


@dataclass(frozen=True, kw_only=True, eq=False)
class SecAggConfig:
    """Everything both sides must agree on before a round starts.

    Args:
        session_id: 16 random bytes naming this session (use ``os.urandom(16)``); keys
            and ciphertexts are bound to it, so messages from other sessions are refused.
        round_index: the training round, ``[0, 2**32)``; also bound into every key.
        client_ids: the selected clients, distinct ints in ``[0, 2**32)``, at least 2.
            A client's Shamir evaluation point is its position in this tuple plus one.
        threshold: ``t``: shares needed to rebuild a secret; the round completes iff
            every secret to rebuild has ``t`` live holders. ``1 <= t <= k + 1``.
        neighbors: ``"full"`` (classic SecAgg, ``k = n - 1``) or ``k`` for SecAgg+.
        bits: ring Z_{2^bits} of the summed words, ``1 <= bits <= 62``.
        dim: words per input vector (``>= 1``).
        seed_bytes: 16 (AES-128 mask PRG) or 32 (AES-256).
        authenticated: sign key advertisements and the consistency check with Ed25519;
            needs ``verify_keys``.
        verify_keys: client id -> 32-byte Ed25519 public key (a PKI the clients trust).

    Raises:
        ValueError: any field out of range (checked on construction).
    """

    session_id: bytes
    client_ids: tuple[int, ...]
    threshold: int
    bits: int
    dim: int
    neighbors: int | Literal["full"] = "full"
    round_index: int = 0
    seed_bytes: int = 16
    authenticated: bool = False
    verify_keys: Mapping[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, (bytes, bytearray)) or len(self.session_id) != 16:
            raise ValueError("session_id must be 16 bytes")
        object.__setattr__(self, "session_id", bytes(self.session_id))
        ids = tuple(self.client_ids)
        if len(ids) < 2:
            raise ValueError("a round needs at least 2 clients")
        for cid in ids:
            if not isinstance(cid, int) or isinstance(cid, bool) or not 0 <= cid <= _U32_MAX:
                raise ValueError(f"client ids must be ints in [0, 2**32), got {cid!r}")
        if len(set(ids)) != len(ids):
            raise ValueError("client ids must be distinct")
        object.__setattr__(self, "client_ids", ids)
        if not isinstance(self.round_index, int) or not 0 <= self.round_index <= _U32_MAX:
            raise ValueError(f"round_index must be in [0, 2**32), got {self.round_index!r}")
        if not isinstance(self.bits, int) or not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"bits must be an int in [1, {MAX_BITS}], got {self.bits!r}")
        if not isinstance(self.dim, int) or self.dim < 1:
            raise ValueError(f"dim must be an int >= 1, got {self.dim!r}")
        if self.seed_bytes not in (16, 32):
            raise ValueError("seed_bytes must be 16 or 32")
        n = len(ids)
        if self.neighbors != "full" and (
            not isinstance(self.neighbors, int) or isinstance(self.neighbors, bool)
        ):
            raise ValueError(f"neighbors must be 'full' or an int, got {self.neighbors!r}")
        k = self.k
        if not 1 <= k <= n - 1:
            raise ValueError(f"neighbors must be in [1, {n - 1}] for {n} clients, got {k}")
        if not isinstance(self.threshold, int) or not 1 <= self.threshold <= k + 1:
            raise ValueError(
                f"threshold must be an int in [1, {k + 1}] (k + 1 holders), got {self.threshold!r}"
            )
        keys = dict(self.verify_keys)
        if self.authenticated:
            missing = [c for c in ids if c not in keys]
            if missing:
                raise ValueError(f"authenticated mode needs verify_keys for clients {missing[:5]}")
            bad = [c for c, v in keys.items() if not isinstance(v, bytes) or len(v) != 32]
            if bad:
                raise ValueError(f"verify_keys must be 32-byte Ed25519 keys (clients {bad[:5]})")
        object.__setattr__(self, "verify_keys", MappingProxyType(keys))
        self.graph  # noqa: B018 - builds the graph now so an impossible k fails here

    @property
    def n(self) -> int:
        """Number of selected clients."""
        return len(self.client_ids)

    @property
    def k(self) -> int:
        """Neighbours per client (``n - 1`` for ``"full"``)."""
        return self.n - 1 if self.neighbors == "full" else int(self.neighbors)

    @cached_property
    def graph(self) -> NeighborGraph:
        """The neighbour graph (complete for ``"full"``)."""
        return NeighborGraph(self.client_ids, self.k, self.session_id, self.round_index)

    @cached_property
    def x_of(self) -> Mapping[int, int]:
        """Client id -> Shamir evaluation point (position + 1)."""
        return MappingProxyType({cid: i + 1 for i, cid in enumerate(self.client_ids)})

    @cached_property
    def id_set(self) -> frozenset[int]:
        """The selected client ids as a set."""
        return frozenset(self.client_ids)
