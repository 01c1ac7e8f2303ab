"""The neighbour graph: who pairs masks and holds shares with whom.

Classic SecAgg (Bonawitz et al. 2017) is the complete graph. SecAgg+ (Bell et al. 2020)
replaces it with a sparse random graph of degree ``k``; we use a Harary-style ring on
a pseudo-random permutation of the clients: every client is joined to the ``k // 2``
clients on each side of it on the ring, and for odd ``k`` (which needs an even number
of clients) also to the client diametrically opposite. Every client has exactly ``k``
neighbours, and ``k = n - 1`` is the complete graph.

The permutation is public and deterministic: client ``client_ids[i]`` gets the
``i``-th word of the AES-CTR mask PRG (62-bit words) keyed by
``HKDF(session_id, "neighbour-graph", session_id, round, 0, 0)``, and clients are
placed on the ring in ascending order of (word, id). Anyone holding the config
computes the same graph; no message carries it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from secagg_rec.crypto.kdf import derive_key
from secagg_rec.crypto.prg import expand_mask

__all__ = ["NeighborGraph"]


class NeighborGraph:
    """A ``k``-regular graph over ``client_ids``.

    Args:
        client_ids: distinct ids, at least 2.
        k: neighbours per client (excluding itself), ``1 <= k <= n - 1``; odd ``k``
            needs an even number of clients.
        session_id: 16 bytes; keys the pseudo-random ring order.
        round_index: training round, part of the derivation.

    Raises:
        ValueError: fewer than 2 or duplicate ids, ``k`` out of range, or odd ``k``
            with an odd number of clients (no ``k``-regular graph exists).
    """

    def __init__(
        self, client_ids: Sequence[int], k: int, session_id: bytes, round_index: int = 0
    ) -> None:
        ids = tuple(int(c) for c in client_ids)
        n = len(ids)
        if n < 2:
            raise ValueError("a round needs at least 2 clients")
        if len(set(ids)) != n:
            raise ValueError("client ids must be distinct")
        if not isinstance(k, int) or not 1 <= k <= n - 1:
            raise ValueError(f"neighbours k must be an int in [1, {n - 1}], got {k!r}")
        if k % 2 == 1 and n % 2 == 1:
            raise ValueError(
                f"no {k}-regular graph on {n} clients (odd k needs an even client count); "
                f"use k={k + 1 if k + 1 <= n - 1 else k - 1}"
            )
        self.client_ids = ids
        self.k = k
        self.n = n
        if k == n - 1:
            order = np.arange(n)
        else:
            key = derive_key(session_id, "neighbour-graph", session_id, round_index, 0, 0, 16)
            words = expand_mask(key, n, 62)
            order = np.lexsort((np.array(ids, dtype=np.int64), words.astype(np.int64)))
        self._ring = [ids[i] for i in order]
        self._pos = {cid: p for p, cid in enumerate(self._ring)}
        self._cache: dict[int, tuple[int, ...]] = {}

    @property
    def is_complete(self) -> bool:
        """True for the classic SecAgg complete graph."""
        return self.k == self.n - 1

    def neighbors(self, client_id: int) -> tuple[int, ...]:
        """The ``k`` neighbours of ``client_id``, ascending. Raises KeyError if unknown."""
        cached = self._cache.get(client_id)
        if cached is not None:
            return cached
        p = self._pos[client_id]
        n, half = self.n, self.k // 2
        if self.is_complete:
            result = tuple(sorted(c for c in self.client_ids if c != client_id))
        else:
            offs = list(range(1, half + 1)) + [-d for d in range(1, half + 1)]
            if self.k % 2 == 1:
                offs.append(n // 2)
            result = tuple(sorted(self._ring[(p + d) % n] for d in offs))
        self._cache[client_id] = result
        return result

    def holders(self, client_id: int) -> tuple[int, ...]:
        """Who holds shares of ``client_id``'s secrets: its neighbours and itself."""
        return tuple(sorted((*self.neighbors(client_id), client_id)))

    def are_neighbors(self, a: int, b: int) -> bool:
        """True iff ``a`` and ``b`` are joined (symmetric)."""
        return b in self.neighbors(a)
