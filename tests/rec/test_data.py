"""``load_dataset``: what ``--data`` resolves to."""

from __future__ import annotations

import numpy as np
import pytest

from secagg_rec.rec.data import load_dataset, make_synthetic


def test_default_is_synthetic_and_needs_nothing():
    ds = load_dataset()
    assert ds.name == "synthetic(seed=0)"
    assert np.array_equal(ds.items, make_synthetic(seed=0).items)
    assert load_dataset("synthetic", seed=3).name == "synthetic(seed=3)"


def test_paths_are_loaded(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::2::5::10\n2::2::4::11\n")
    assert load_dataset(tmp_path).n_users == 2
    assert load_dataset(str(tmp_path / "ratings.dat")).n_items == 1


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "missing")
    with pytest.raises(TypeError):
        load_dataset(3)  # type: ignore[arg-type]
