"""A tiny memo keyed by the identity of large immutable tuples.

A server sends one survivor list to each of ``n`` clients. Without a memo every one of
those messages would re-check and re-encode all ``n`` ids, O(n^2) per round (minutes at
``n = 10,000``). Keys are held by the memo, so an identity hit always refers to the
same, unchanged tuple; the memo is replaced whole, never mutated, so concurrent readers
(emulated clients in threads) are safe.
"""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")

__all__ = ["TupleMemo"]


class TupleMemo(Generic[V]):
    """The values computed for the last ``size`` tuples of at least ``min_len`` items."""

    def __init__(self, size: int = 4, min_len: int = 32) -> None:
        self._entries: tuple[tuple[tuple[int, ...], V], ...] = ()
        self._size, self._min_len = size, min_len

    def get(self, key: tuple[int, ...]) -> V | None:
        """The value stored for this very tuple object, or ``None``."""
        for known, value in self._entries:
            if key is known:
                return value
        return None

    def put(self, key: tuple[int, ...], value: V) -> None:
        """Remember ``value`` for ``key`` if ``key`` is long enough to be worth it."""
        if len(key) >= self._min_len:
            self._entries = ((key, value), *self._entries)[: self._size]
