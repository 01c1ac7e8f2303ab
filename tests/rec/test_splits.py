"""The NCF leave-one-out split: tie rule, negatives, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from secagg_rec.rec.dataset import InteractionDataset
from secagg_rec.rec.splits import leave_one_out_split
from secagg_rec.rec.synthetic import make_synthetic


def _dataset(rows, n_items=300):
    users, items, ts = zip(*rows, strict=True)
    return InteractionDataset(
        users=list(users),
        items=list(items),
        timestamps=list(ts),
        ratings=[1.0] * len(rows),
        user_ids=np.arange(max(users) + 1),
        item_ids=np.arange(n_items),
    )


def test_latest_is_test_and_ties_go_to_the_largest_item():
    rows = [
        (0, 5, 100),
        (0, 9, 300),
        (0, 2, 300),
        (0, 7, 200),
        (0, 4, 300),  # tie at 300
        (1, 1, 10),
        (1, 3, 20),
        (1, 8, 30),
        (1, 6, 40),
    ]
    split = leave_one_out_split(_dataset(rows), n_negatives=5)
    # user 0: order (100,5) (200,7) (300,2) (300,4) (300,9) -> test 9, val 4
    assert split.test_items[0] == 9 and split.val_items[0] == 4
    assert split.user_train_items(0).tolist() == [2, 5, 7]
    assert split.test_items[1] == 6 and split.val_items[1] == 8
    assert split.user_train_items(1).tolist() == [1, 3]


def test_input_order_does_not_matter():
    ds = make_synthetic(n_users=50, n_items=200, seed=1)
    perm = np.random.default_rng(0).permutation(ds.n_interactions)
    shuffled = InteractionDataset(
        ds.users[perm],
        ds.items[perm],
        ds.timestamps[perm],
        ds.ratings[perm],
        ds.user_ids,
        ds.item_ids,
    )
    a, b = leave_one_out_split(ds, seed=2), leave_one_out_split(shuffled, seed=2)
    for field in ("train_items", "train_indptr", "val_items", "test_items", "test_negatives"):
        assert np.array_equal(getattr(a, field), getattr(b, field))


def test_negatives_are_distinct_unseen_and_fixed_by_seed():
    ds = make_synthetic(n_users=80, n_items=300, seed=0)
    split = leave_one_out_split(ds, seed=7)
    seen = {u: set(ds.items[ds.users == u].tolist()) for u in range(ds.n_users)}
    for which in ("val", "test"):
        _, negs = split.held_out(which)
        assert negs.shape == (80, 99)
        for u in range(ds.n_users):
            assert len(set(negs[u].tolist())) == 99
            assert not set(negs[u].tolist()) & seen[u]
            assert negs[u].min() >= 0 and negs[u].max() < ds.n_items
    again = leave_one_out_split(ds, seed=7)
    other = leave_one_out_split(ds, seed=8)
    assert np.array_equal(split.test_negatives, again.test_negatives)
    assert not np.array_equal(split.test_negatives, other.test_negatives)
    assert not np.array_equal(split.val_negatives, split.test_negatives)


def test_a_users_negatives_do_not_depend_on_other_users():
    ds = make_synthetic(n_users=40, n_items=250, seed=0)
    keep = ds.users < 20
    half = InteractionDataset(
        ds.users[keep],
        ds.items[keep],
        ds.timestamps[keep],
        ds.ratings[keep],
        ds.user_ids[:20],
        ds.item_ids,
    )
    a, b = leave_one_out_split(ds, seed=1), leave_one_out_split(half, seed=1)
    assert np.array_equal(a.test_negatives[:20], b.test_negatives)


def test_partition_of_interactions_and_counts():
    ds = make_synthetic(n_users=60, n_items=220, seed=5)
    split = leave_one_out_split(ds)
    pairs = set(zip(ds.users.tolist(), ds.items.tolist(), strict=True))
    users, items = split.train_pairs()
    train = set(zip(users.tolist(), items.tolist(), strict=True))
    held = {(u, int(split.val_items[u])) for u in range(60)} | {
        (u, int(split.test_items[u])) for u in range(60)
    }
    assert not train & held and train | held == pairs and len(train) == split.n_train
    assert np.array_equal(split.train_item_counts(), np.bincount(items, minlength=220))
    assert split.known_items(3, "test").tolist() == sorted(
        set(split.user_train_items(3).tolist()) | {int(split.val_items[3])}
    )
    assert np.array_equal(split.known_items(3, "val"), split.user_train_items(3))


def test_short_users_are_train_only_and_duplicates_count_once():
    rows = [(0, 1, 1), (0, 2, 2), (1, 1, 1), (1, 2, 2), (1, 1, 9), (1, 3, 3), (1, 4, 4)]
    split = leave_one_out_split(_dataset(rows), n_negatives=3)
    assert split.test_items[0] == -1 and split.val_items[0] == -1
    assert split.user_train_items(0).tolist() == [1, 2]
    assert (split.test_negatives[0] == -1).all()
    # user 1: item 1 repeated, its latest time 9 makes it the test item
    assert split.test_items[1] == 1 and split.val_items[1] == 4
    assert split.user_train_items(1).tolist() == [2, 3]
    assert split.eval_users.tolist() == [1]


def test_errors():
    ds = _dataset([(0, i, i) for i in range(10)], n_items=12)
    with pytest.raises(ValueError, match="n_negatives=99"):
        leave_one_out_split(ds)
    with pytest.raises(ValueError):
        leave_one_out_split(ds, n_negatives=0)
    with pytest.raises(TypeError):
        leave_one_out_split("data")  # type: ignore[arg-type]
    split = leave_one_out_split(ds, n_negatives=2)
    with pytest.raises(ValueError):
        split.held_out("train")
    with pytest.raises(IndexError):
        split.user_train_items(1)
