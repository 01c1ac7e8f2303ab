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

# The curated API, loaded on first use so that ``import secagg_rec`` stays light (no
# torch until a torch-using name is touched).
_LAZY = {
    "Quantizer": "secagg_rec.encoding",
    "SecAggConfig": "secagg_rec.secagg",
    "ClientSession": "secagg_rec.secagg",
    "ServerSession": "secagg_rec.secagg",
    "run_round": "secagg_rec.secagg",
    "choose_parameters": "secagg_rec.secagg.params",
    "make_private": "secagg_rec.privacy",
    "PrivacyLedger": "secagg_rec.privacy",
    "DPSGDEvent": "secagg_rec.privacy",
    "epsilon": "secagg_rec.privacy",
    "calibrate_noise": "secagg_rec.privacy",
    "FederatedConfig": "secagg_rec.fl",
    "train_federated": "secagg_rec.fl",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'secagg_rec' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "BudgetExceededError",
    "ClientSession",
    "DPSGDEvent",
    "DataFormatError",
    "DecodeError",
    "DecryptionError",
    "FederatedConfig",
    "LedgerError",
    "LocalProtocolError",
    "PrivacyLedger",
    "Quantizer",
    "RemoteProtocolError",
    "SecAggConfig",
    "SecAggError",
    "ServerSession",
    "ThresholdError",
    "__version__",
    "calibrate_noise",
    "choose_parameters",
    "epsilon",
    "make_private",
    "run_round",
    "train_federated",
]
