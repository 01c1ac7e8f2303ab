"""The vector and weight each partition contributes in each round (known to the test).

Values are multiples of 1/64 and weights are integers, so with ``scale=64`` and
``weight_scale=1`` stochastic rounding is exact and the encoded words are known.
"""

from __future__ import annotations

import numpy as np

DIM = 9
SCALE = 64.0
WEIGHT_MAX = 100.0


def update_of(partition: int, round_index: int) -> tuple[np.ndarray, float]:
    """``(vector of DIM floats in [-1, 1], integer weight in [1, 99])``."""
    rng = np.random.default_rng([partition, round_index, 20_24])
    return rng.integers(-64, 65, DIM) / SCALE, float(rng.integers(1, 100))
