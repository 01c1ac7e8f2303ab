"""Getting interactions: MovieLens files, fetched datasets, or synthetic data.

:func:`load_dataset` is what ``--data`` resolves through:

* ``None`` or ``"synthetic"``: the built-in generator
  (:func:`~secagg_rec.rec.synthetic.make_synthetic`), no download needed;
* a path to a dataset directory or ratings file: the MovieLens loaders
  (:mod:`secagg_rec.rec.loaders`: ``u.data``, ``ratings.dat``, ``ratings.csv``);
* a dataset name (``"ml-100k"``, ``"ml-1m"``, ``"ml-latest-small"``) that is not an
  existing path: that dataset in the cache directory, as put there by
  ``secagg-rec data fetch``.

The names below are re-exported so that ``secagg_rec.rec.data`` is the one place to
import data functions from.
"""

from __future__ import annotations

import os
from pathlib import Path

from secagg_rec.rec.dataset import InteractionDataset
from secagg_rec.rec.fetch import SOURCES, default_cache_dir
from secagg_rec.rec.loaders import (
    find_ratings_file,
    load_ml100k,
    load_ratings,
    load_ratings_csv,
    load_ratings_dat,
)
from secagg_rec.rec.synthetic import make_synthetic

__all__ = [
    "InteractionDataset",
    "find_ratings_file",
    "load_dataset",
    "load_ml100k",
    "load_ratings",
    "load_ratings_csv",
    "load_ratings_dat",
    "make_synthetic",
]


def load_dataset(
    data: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> InteractionDataset:
    """Resolve a ``--data`` value to a dataset (see module docstring).

    Args:
        data: ``None``/``"synthetic"``, a path, or a dataset name.
        seed: seed of the synthetic generator (ignored for files).
        cache_dir: where fetched datasets live (default
            :func:`~secagg_rec.rec.fetch.default_cache_dir`).

    Raises:
        TypeError: ``data`` of another type.
        FileNotFoundError: no such path, or a named dataset not fetched yet (the
            message gives the fetch command).
        DataFormatError: a malformed ratings file.
    """
    if data is None or (isinstance(data, str) and data == "synthetic"):
        return make_synthetic(seed=seed)
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"data must be None, a str or a path, got {type(data).__name__}")
    path = Path(data).expanduser()
    if not path.exists() and isinstance(data, str) and data in SOURCES:
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        fetched = cache / data
        if not fetched.is_dir():
            raise FileNotFoundError(
                f"dataset {data} is not in {cache}; run `secagg-rec data fetch {data}` "
                f"(add --cache {cache} if that is not the default) or pass a path"
            )
        path = fetched
    return load_ratings(path)
