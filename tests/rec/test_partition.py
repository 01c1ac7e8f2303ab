"""Cross-device and cross-silo partitions."""

from __future__ import annotations

import numpy as np
import pytest

from secagg_rec.rec.partition import cross_device_partition, cross_silo_partition


def test_cross_device_is_one_user_per_client():
    p = cross_device_partition(5)
    assert p.kind == "cross-device" and p.n_clients == 5 and p.n_users == 5
    assert [c.tolist() for c in p.client_users] == [[0], [1], [2], [3], [4]]
    assert p.user_to_client.tolist() == [0, 1, 2, 3, 4]


def test_cross_silo_is_disjoint_complete_balanced_and_seeded():
    p = cross_silo_partition(103, 10, seed=1)
    assert p.kind == "cross-silo" and p.n_clients == 10
    everyone = np.concatenate(p.client_users)
    assert np.array_equal(np.sort(everyone), np.arange(103))
    assert sorted(p.client_sizes().tolist()) == [10] * 7 + [11] * 3
    for c in range(10):
        assert (p.user_to_client[p.users_of(c)] == c).all()
    same = cross_silo_partition(103, 10, seed=1)
    other = cross_silo_partition(103, 10, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(p.client_users, same.client_users, strict=True))
    assert any(
        not np.array_equal(a, b) for a, b in zip(p.client_users, other.client_users, strict=True)
    )


def test_cross_silo_weights_give_proportional_nonempty_silos():
    p = cross_silo_partition(100, 4, weights=[5, 3, 1.5, 0.5])
    sizes = p.client_sizes()
    assert sizes.sum() == 100 and (sizes >= 1).all()
    assert sizes.tolist() == sorted(sizes.tolist(), reverse=True)
    assert abs(sizes[0] - 50) <= 2
    tiny = cross_silo_partition(4, 4, weights=[100, 1, 1, 1])
    assert tiny.client_sizes().tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((5, 6), {}, ValueError),
        ((5, 0), {}, ValueError),
        ((5, 2), dict(weights=[1.0]), ValueError),
        ((5, 2), dict(weights=[1.0, -1.0]), ValueError),
        ((5, 2), dict(seed=-1), ValueError),
        ((5.0, 2), {}, TypeError),
    ],
)
def test_bad_arguments(args, kwargs, error):
    with pytest.raises(error):
        cross_silo_partition(*args, **kwargs)


def test_client_index_checked():
    with pytest.raises(IndexError):
        cross_device_partition(3).users_of(3)
    with pytest.raises(ValueError):
        cross_device_partition(0)
