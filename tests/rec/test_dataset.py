"""InteractionDataset and the synthetic generator."""

from __future__ import annotations

import numpy as np
import pytest

from secagg_rec.rec.dataset import InteractionDataset
from secagg_rec.rec.synthetic import make_synthetic


def test_raw_ids_map_to_dense_indices_in_id_order():
    ds = InteractionDataset.from_raw_ids([7, 3, 7], [50, 50, 10], [1, 2, 3], [4, 5, 1])
    assert ds.user_ids.tolist() == [3, 7] and ds.users.tolist() == [1, 0, 1]
    assert ds.item_ids.tolist() == [10, 50] and ds.items.tolist() == [1, 1, 0]
    assert ds.user_index(7) == 1 and ds.item_index(10) == 0
    with pytest.raises(KeyError):
        ds.user_index(5)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 2, 3)


def test_summary_of_an_empty_dataset():
    empty = InteractionDataset([], [], [], [], user_ids=[1], item_ids=[1])
    assert empty.summary()["interactions"] == 0


def test_summary_counts_users_with_tied_latest_timestamps():
    # user 1: latest timestamp 9 held twice; user 2: one latest
    ds = InteractionDataset.from_raw_ids([1, 1, 1, 2, 2], [1, 2, 3, 1, 2], [5, 9, 9, 1, 2], [1] * 5)
    s = ds.summary()
    assert s["users_with_tied_latest"] == 1
    assert s["min_interactions_per_user"] == 2 and s["max_interactions_per_user"] == 3


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(users=[0, 1], items=[0], timestamps=[0, 0], ratings=[1, 1]), ValueError),
        (dict(users=[0, 2], items=[0, 0], timestamps=[0, 0], ratings=[1, 1]), ValueError),
        (dict(users=[0.5, 1], items=[0, 0], timestamps=[0, 0], ratings=[1, 1]), TypeError),
        (dict(users=[0, 1], items=[0, 0], timestamps=[0, 0], ratings=[1, np.nan]), ValueError),
    ],
)
def test_invalid_arrays_are_rejected(kwargs, error):
    with pytest.raises(error):
        InteractionDataset(user_ids=[10, 11], item_ids=[5], **kwargs)


def test_ids_must_increase_and_dataset_must_not_be_empty():
    with pytest.raises(ValueError, match="strictly increasing"):
        InteractionDataset([0], [0], [0], [1.0], user_ids=[3, 3], item_ids=[1])
    with pytest.raises(ValueError, match="at least one"):
        InteractionDataset.from_raw_ids([], [], [], [])


def test_synthetic_is_deterministic_by_seed():
    a = make_synthetic(n_users=60, n_items=200, seed=3)
    b = make_synthetic(n_users=60, n_items=200, seed=3)
    c = make_synthetic(n_users=60, n_items=200, seed=4)
    for field in ("users", "items", "timestamps", "ratings"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.items, c.items)


def test_synthetic_shape_popularity_and_ties():
    ds = make_synthetic(n_users=300, n_items=400, min_interactions=10, mean_interactions=40, seed=0)
    assert (ds.n_users, ds.n_items) == (300, 400)
    per_user = np.bincount(ds.users, minlength=ds.n_users)
    assert per_user.min() >= 10 and per_user.max() <= 300
    # no repeated (user, item) pair
    assert np.unique(ds.users * ds.n_items + ds.items).size == ds.n_interactions
    # long tail: the top 10% of items take a much larger share than 10%
    counts = np.sort(np.bincount(ds.items, minlength=ds.n_items))[::-1]
    assert counts[:40].sum() > 0.25 * counts.sum()
    assert ds.summary()["users_with_tied_latest"] > 0
    assert set(np.unique(ds.ratings).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(n_users=0), ValueError),
        (dict(n_items=50), ValueError),  # fewer than min_interactions + 100
        (dict(min_interactions=2), ValueError),
        (dict(mean_interactions=5.0), ValueError),
        (dict(tie_probability=1.0), ValueError),
        (dict(n_users=10.0), TypeError),
        (dict(seed=-1), ValueError),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        make_synthetic(**kwargs)
