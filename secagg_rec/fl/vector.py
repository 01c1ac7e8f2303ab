"""Model <-> flat update vector: only the *shared* parameters, in a fixed order.

A client's update is ``local_shared - global_shared`` flattened in
:meth:`~secagg_rec.rec.models.RecommenderModel.shared_parameter_names` order. Private
(per-user) parameters never enter a vector: there is no function here that reads them.
"""

from __future__ import annotations

import numpy as np
import torch

from secagg_rec.rec.models import RecommenderModel

__all__ = ["load_shared_vector", "shared_dim", "shared_layout", "shared_vector"]


def shared_layout(model: RecommenderModel) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of every shared parameter, in vector order."""
    params = dict(model.named_parameters())
    return [(n, tuple(params[n].shape)) for n in model.shared_parameter_names()]


def shared_dim(model: RecommenderModel) -> int:
    """Length of the shared vector (number of shared scalars)."""
    return int(sum(p.numel() for p in model.shared_parameters()))


def shared_vector(model: RecommenderModel) -> np.ndarray:
    """The shared parameters as one new float32 numpy vector."""
    with torch.no_grad():
        return torch.cat([p.detach().reshape(-1) for p in model.shared_parameters()]).numpy().copy()


def load_shared_vector(model: RecommenderModel, vector: np.ndarray) -> None:
    """Write ``vector`` into the model's shared parameters, in place.

    Raises:
        ValueError: ``vector`` is not 1-D of length :func:`shared_dim`, or not finite.
    """
    vec = np.asarray(vector)
    dim = shared_dim(model)
    if vec.ndim != 1 or vec.shape[0] != dim:
        raise ValueError(f"shared vector must have shape ({dim},), got {vec.shape}")
    if not np.all(np.isfinite(vec)):
        raise ValueError("shared vector contains NaN or infinity")
    src = torch.from_numpy(np.ascontiguousarray(vec, dtype=np.float32))
    offset = 0
    with torch.no_grad():
        for p in model.shared_parameters():
            n = p.numel()
            p.copy_(src[offset : offset + n].view_as(p))
            offset += n
