"""Negative sampling and training examples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg_rec.rec.sampling import (
    TrainingExamples,
    sample_unseen,
    training_examples,
    user_training_examples,
)
from secagg_rec.rec.splits import leave_one_out_split
from secagg_rec.rec.synthetic import make_synthetic


@settings(max_examples=60, deadline=None)
@given(
    n_items=st.integers(1, 400),
    data=st.data(),
    distinct=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_sample_unseen_avoids_seen_items(n_items, data, distinct, seed):
    seen = np.array(
        sorted(data.draw(st.sets(st.integers(0, n_items - 1), max_size=n_items - 1))),
        dtype=np.int64,
    )
    room = n_items - seen.size
    count = data.draw(st.integers(0, room if distinct else 3 * room))
    out = sample_unseen(np.random.default_rng(seed), n_items, seen, count, distinct=distinct)
    assert out.size == count and out.dtype == np.int64
    assert not np.isin(out, seen).any()
    assert ((out >= 0) & (out < n_items)).all()
    if distinct:
        assert np.unique(out).size == count
    again = sample_unseen(np.random.default_rng(seed), n_items, seen, count, distinct=distinct)
    assert np.array_equal(out, again)


def test_sample_unseen_refuses_impossible_requests():
    seen = np.arange(8, dtype=np.int64)
    with pytest.raises(ValueError, match="2 of 10"):
        sample_unseen(np.random.default_rng(0), 10, seen, 3, distinct=True)
    with pytest.raises(ValueError):
        sample_unseen(np.random.default_rng(0), 8, seen, 1, distinct=False)


def test_user_examples_have_positives_then_ratio_negatives():
    ex = user_training_examples(3, np.array([9, 2, 2, 5]), 50, negatives_per_positive=4, seed=1)
    assert ex.items[:3].tolist() == [2, 5, 9]
    assert ex.labels.tolist() == [1.0] * 3 + [0.0] * 12
    assert (ex.users == 3).all()
    assert not np.isin(ex.items[3:], [2, 5, 9]).any()


def test_user_examples_are_deterministic_and_vary_by_epoch_and_seed():
    items = np.arange(0, 40, 3)
    a = user_training_examples(1, items, 500, seed=0, epoch=0)
    assert np.array_equal(a.items, user_training_examples(1, items, 500, seed=0, epoch=0).items)
    assert not np.array_equal(a.items, user_training_examples(1, items, 500, seed=0, epoch=1).items)
    assert not np.array_equal(a.items, user_training_examples(1, items, 500, seed=1, epoch=0).items)
    assert not np.array_equal(a.items, user_training_examples(2, items, 500, seed=0, epoch=0).items)


def test_centralized_examples_equal_each_clients_own():
    ds = make_synthetic(n_users=30, n_items=200, seed=2)
    split = leave_one_out_split(ds)
    everyone = training_examples(split, seed=4, epoch=2, negatives_per_positive=3)
    parts = [
        user_training_examples(
            u, split.user_train_items(u), split.n_items, seed=4, epoch=2, negatives_per_positive=3
        )
        for u in range(split.n_users)
    ]
    joined = TrainingExamples.concatenate(parts)
    for field in ("users", "items", "labels"):
        assert np.array_equal(getattr(everyone, field), getattr(joined, field))
    some = training_examples(split, users=[7, 2], seed=4, epoch=2, negatives_per_positive=3)
    assert np.array_equal(some.items, np.concatenate([parts[7].items, parts[2].items]))
    assert len(everyone) == 4 * split.n_train


def test_training_negatives_may_include_held_out_items_but_not_train_items():
    # a user with 3 training items out of 6: negatives come from the other 3, held-out
    # items included (NCF; excluding them would leak the answers)
    ex = user_training_examples(0, np.array([0, 1, 2]), 6, negatives_per_positive=50)
    assert set(ex.items[3:].tolist()) == {3, 4, 5}


def test_tensor_views():
    ex = user_training_examples(0, np.array([1, 2]), 10, negatives_per_positive=1)
    users, _items, labels = ex.tensors()
    assert users.dtype.is_floating_point is False and labels.dtype.is_floating_point
    assert len(ex.tensor_dataset()) == 4


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(negatives_per_positive=-1), ValueError),
        (dict(seed=-1), ValueError),
        (dict(epoch=1.5), TypeError),
    ],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        user_training_examples(0, np.array([1]), 10, **kwargs)


def test_bad_user_rejected_before_work():
    split = leave_one_out_split(make_synthetic(n_users=5, n_items=130, seed=0))
    with pytest.raises(ValueError, match="outside"):
        training_examples(split, users=[0, 5])
    with pytest.raises(ValueError, match="items"):
        user_training_examples(0, np.array([10]), 10)
