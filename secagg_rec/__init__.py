"""secagg_rec: privacy-preserving federated recommendation.

Clients train locally with DP-SGD (Opacus), quantize their update into Z_{2^b}, and mask
it with pairwise secret keys (Bonawitz et al. 2017 / Bell et al. 2020), so the server
learns only the sum of the updates.
"""

from __future__ import annotations

from secagg_rec.errors import (
    BudgetExceededError,
    DataFormatError,
    DecodeError,
    DecryptionError,
    LedgerError,
    LocalProtocolError,
    RemoteProtocolError,
    SecAggError,
    ThresholdError,
)

__version__ = "0.1.0"

__all__ = [
    "BudgetExceededError",
    "DataFormatError",
    "DecodeError",
    "DecryptionError",
    "LedgerError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "SecAggError",
    "ThresholdError",
    "__version__",
]
