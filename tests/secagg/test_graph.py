"""The SecAgg+ neighbour graph is k-regular, symmetric and deterministic."""

from __future__ import annotations

import pytest

from secagg_rec.secagg.graph import NeighborGraph


@pytest.mark.parametrize(("n", "k"), [(2, 1), (5, 4), (10, 3), (10, 4), (101, 20), (64, 63)])
def test_regular_symmetric_and_deterministic(n, k):
    ids = [1000 + 3 * i for i in range(n)]
    g = NeighborGraph(ids, k, b"s" * 16)
    h = NeighborGraph(ids, k, b"s" * 16)
    for c in ids:
        nb = g.neighbors(c)
        assert len(nb) == k and c not in nb and len(set(nb)) == k
        assert all(g.are_neighbors(v, c) for v in nb)
        assert nb == h.neighbors(c)
        assert g.holders(c) == tuple(sorted((*nb, c)))


def test_session_changes_the_graph():
    ids = list(range(200))
    a = NeighborGraph(ids, 10, b"a" * 16)
    b = NeighborGraph(ids, 10, b"b" * 16)
    assert any(a.neighbors(c) != b.neighbors(c) for c in ids)


def test_impossible_graphs_are_refused():
    with pytest.raises(ValueError, match="odd k"):
        NeighborGraph(range(9), 3, b"s" * 16)
    with pytest.raises(ValueError):
        NeighborGraph(range(9), 9, b"s" * 16)
    with pytest.raises(ValueError, match="distinct"):
        NeighborGraph([1, 1, 2], 1, b"s" * 16)
