"""Flower ``ArrayRecord`` <-> one flat float vector, in the record's key order.

The client flattens the arrays its training returns into the vector it aggregates;
the server turns the aggregate back into arrays shaped like the global model.

Worked example: a record ``{"w": [[1, 2], [3, 4]], "b": [5]}`` flattens to
``[1, 2, 3, 4, 5]`` (row-major, keys in insertion order); unflattening
``[0.5, 0, 0, 0, 1]`` against it gives ``{"w": [[0.5, 0], [0, 0]], "b": [1]}``.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord

__all__ = ["flatten", "unflatten", "vector_size"]


def vector_size(record: ArrayRecord) -> int:
    """Total number of elements in ``record``."""
    return int(sum(int(np.prod(a.shape, dtype=np.int64)) for a in record.values()))


def flatten(record: ArrayRecord) -> np.ndarray:
    """All arrays of ``record`` as one float64 vector (keys in order, row-major).

    Raises:
        ValueError: the record is empty or holds a non-numeric array.
    """
    if len(record) == 0:
        raise ValueError("cannot flatten an empty ArrayRecord")
    parts = []
    for key, array in record.items():
        values = array.numpy()
        if values.dtype.kind not in "biuf":
            raise ValueError(f"array {key!r} has non-numeric dtype {values.dtype}")
        parts.append(np.asarray(values, dtype=np.float64).reshape(-1))
    return np.concatenate(parts)


def unflatten(vector: np.ndarray, like: ArrayRecord) -> ArrayRecord:
    """Arrays shaped and typed like ``like``, filled from ``vector`` in order.

    Raises:
        ValueError: ``vector`` does not have exactly :func:`vector_size` elements.
    """
    flat = np.asarray(vector).reshape(-1)
    need = vector_size(like)
    if flat.size != need:
        raise ValueError(f"vector has {flat.size} elements, the record needs {need}")
    out: list[tuple[str, np.ndarray]] = []
    offset = 0
    for key, array in like.items():
        size = int(np.prod(array.shape, dtype=np.int64))
        dtype = np.dtype(array.dtype)
        piece = flat[offset : offset + size].reshape(tuple(array.shape)).astype(dtype)
        out.append((key, piece))
        offset += size
    return ArrayRecord({key: Array(np.ascontiguousarray(values)) for key, values in out})
