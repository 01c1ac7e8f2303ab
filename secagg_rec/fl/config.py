"""Configuration of a federated training run (the options of ``secagg-rec train``).

One frozen dataclass holds every option; :func:`load_config_file` reads the same
options from a TOML file (keys are the long option names with ``-`` or ``_``), and the
command line overrides the file. Unknown keys and bad values are refused with the file
and key named.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from secagg_rec.fl.local import LOCAL_OPTIMIZERS
from secagg_rec.fl.server_opt import LR_SCHEDULES, SERVER_OPTIMIZERS

__all__ = ["FederatedConfig", "load_config_file", "parse_partition"]

DATASETS = ("synthetic", "movielens")
WEIGHTINGS = ("uniform", "examples")
MODELS = ("mf", "gmf", "neumf", "logreg")

#: The local optimizer each model gets when none is given, and the learning rate for
#: (model, optimizer) when none is given. Chosen on ML-100K validation HR@10
#: (docs/benchmarks.md#federated-training): plain SGD at lr 5 suits the embedding-only
#: models; NeuMF's MLP tower diverges there (NaN) and crawls at SGD lr 1, Adam at 0.01
#: trains it.
DEFAULT_LOCAL_OPTIMIZER = {"mf": "sgd", "gmf": "sgd", "logreg": "sgd", "neumf": "adam"}
DEFAULT_LOCAL_LR = {"sgd": 5.0, "adam": 0.01}
DEFAULT_LOCAL_LR_BY_MODEL = {("neumf", "sgd"): 1.0}

#: The server learning rate when none is given: 3 for non-private MF (chosen on ML-100K
#: validation HR@10, mean of 3 seeds, with uniform client weights: 0.678 at 3, 0.672 at
#: 2, 0.663 at 4 for seed 0), 1 otherwise (NeuMF, GMF and logistic regression were not
#: tuned at 3, and under DP a larger server step scales the averaged noise too);
#: FedAdam, whose step is per coordinate, 0.05 (best of 0.01-0.05 on validation).
DEFAULT_SERVER_LR = 1.0
DEFAULT_SERVER_LR_BY_MODEL = {"mf": 3.0}
DEFAULT_FEDADAM_LR = 0.05

#: Options whose ``None`` is resolved in ``__post_init__`` from other options.
RESOLVED_DEFAULTS = ("local_optimizer", "local_lr", "server_lr")


def parse_partition(value: str) -> tuple[str, int]:
    """``"device"`` -> ``("device", 0)``; ``"silo:10"`` -> ``("silo", 10)``.

    Raises:
        ValueError: anything else.
    """
    if value == "device":
        return "device", 0
    if value.startswith("silo:"):
        try:
            n = int(value.split(":", 1)[1])
        except ValueError:
            n = 0
        if n >= 2:
            return "silo", n
    raise ValueError(f"partition must be 'device' or 'silo:N' with N >= 2, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class FederatedConfig:
    """Every option of a run. Defaults are the tuned MovieLens/MF settings
    (see ``docs/benchmarks.md``).

    Attributes (units and ranges):
        dataset: ``"synthetic"`` (built-in, no download) or ``"movielens"``.
        data: dataset directory or ratings file (movielens); ``None`` for synthetic.
        model: ``"mf"``, ``"gmf"``, ``"neumf"`` or ``"logreg"``.
        factors: embedding size, >= 1.
        item_bias: add a learned (shared) per-item bias to MF (ignored by other models).
        rounds: federated rounds, >= 1 (the best round is chosen on validation).
        clients_per_round: clients sampled per round, >= 2 (capped at the client count).
        local_epochs, local_user_epochs, local_batch_size, local_lr, local_optimizer,
        local_weight_decay: the clients' local training. ``local_optimizer`` and
            ``local_lr`` left at ``None`` take the model's defaults
            (:data:`DEFAULT_LOCAL_OPTIMIZER`, :data:`DEFAULT_LOCAL_LR`): SGD at 5 for
            MF, GMF and logistic regression, Adam at 0.01 for NeuMF.
            local training (see :class:`~secagg_rec.fl.local.LocalConfig`).
        negatives: sampled negatives per positive, >= 0.
        server_optimizer: ``fedavg``, ``fedavgm`` or ``fedadam``; server_lr > 0 (``None``:
            :data:`DEFAULT_FEDADAM_LR` for FedAdam, else :data:`DEFAULT_SERVER_LR_BY_MODEL`
            without DP and :data:`DEFAULT_SERVER_LR` with it);
        server_lr_schedule: ``constant`` or ``cosine`` (decays over ``rounds``).
        update_clip: per-coordinate bound applied to every update before upload
            (both with and without secure aggregation), > 0.
        weighting: each client's weight in the server's average. ``"uniform"``: 1 per
            client. ``"examples"``: its example count (McMahan et al.'s FedAvg). A
            client's update already grows with its data (it takes one local step per
            batch), so weighting it by its example count as well makes each example
            count in proportion to its client's size (one of a 700-example client's
            examples 35 times one of a 20-example client's); uniform weights count each
            example about once, as pooled training does. Under ``dp`` only
            ``"uniform"`` is allowed (a revealed sum of counts is not covered by DP-SGD).
        secagg: aggregate through the secure-aggregation protocol.
        bits: ring width of secure aggregation, 8..62.
        neighbors: ``"auto"`` (SecAgg+) or ``"full"``.
        dropout: share of each round's clients that vanish mid-round, in ``[0, 0.5]``.
        dp: local DP-SGD through :func:`~secagg_rec.privacy.make_private`.
        epsilon: per-client budget ε (> 0) for ``dp``; the noise is calibrated to it
            unless ``noise_multiplier`` is given, and the ledger enforces it.
        delta: δ in ``(0, 1)``.
        noise_multiplier: σ >= 0 for ``dp`` (overrides calibration).
        max_grad_norm: per-example clip C > 0 for ``dp``.
        partition: ``"device"`` (each user a client) or ``"silo:N"``.
        centralized: train the same model on pooled data instead (the reference).
        eval_every: rounds between validation evaluations, >= 1.
        eval_refit_epochs: before scoring, every client refits its own user rows to the
            current shared model for this many local epochs (on a copy; it never leaves
            the client), as a device would before ranking for its user; >= 0.
        patience: stop after this many evaluations without a better validation HR@10
            (``0`` = never stop early).
        seed: >= 0; fixes data, sampling, client selection, dropouts and DP noise.
        out: output directory (result, plot, checkpoint, ledger); ``None`` = none.
    """

    dataset: str = "synthetic"
    data: str | None = None
    model: str = "mf"
    factors: int = 32
    item_bias: bool = True
    rounds: int = 60
    clients_per_round: int = 200
    local_epochs: int = 1
    local_user_epochs: int = 3
    local_batch_size: int = 64
    local_lr: float | None = None
    local_optimizer: str | None = None
    local_weight_decay: float = 0.0
    negatives: int = 4
    server_optimizer: str = "fedavgm"
    server_lr: float | None = None
    server_lr_schedule: str = "cosine"
    update_clip: float = 1.0
    weighting: str = "uniform"
    secagg: bool = True
    bits: int = 32
    neighbors: str = "auto"
    dropout: float = 0.0
    dp: bool = False
    epsilon: float | None = None
    delta: float = 1e-5
    noise_multiplier: float | None = None
    max_grad_norm: float = 1.0
    partition: str = "device"
    centralized: bool = False
    eval_every: int = 5
    eval_refit_epochs: int = 3
    patience: int = 0
    seed: int = 0
    out: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.dataset == "movielens" and not self.data:
            raise ValueError("--dataset movielens needs --data DIR_OR_FILE (or a name to fetch)")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        # fields left at None get a default that depends on others; replace() redoes it
        object.__setattr__(self, "_defaulted", frozenset(
            n for n in RESOLVED_DEFAULTS if getattr(self, n) is None))
        if self.local_optimizer is None:
            object.__setattr__(self, "local_optimizer", DEFAULT_LOCAL_OPTIMIZER[self.model])
        if self.local_optimizer not in LOCAL_OPTIMIZERS:
            raise ValueError(f"local-optimizer must be one of {LOCAL_OPTIMIZERS}")
        if self.local_lr is None:
            object.__setattr__(self, "local_lr", DEFAULT_LOCAL_LR_BY_MODEL.get(
                (self.model, self.local_optimizer), DEFAULT_LOCAL_LR[self.local_optimizer]))
        if self.server_lr is None:
            if self.server_optimizer == "fedadam":
                lr = DEFAULT_FEDADAM_LR
            elif self.dp:
                lr = DEFAULT_SERVER_LR
            else:
                lr = DEFAULT_SERVER_LR_BY_MODEL.get(self.model, DEFAULT_SERVER_LR)
            object.__setattr__(self, "server_lr", lr)
        for name, low in (
            ("factors", 1), ("rounds", 1), ("clients_per_round", 2), ("local_epochs", 1),
            ("local_user_epochs", 0), ("eval_refit_epochs", 0),
            ("local_batch_size", 1), ("negatives", 0), ("eval_every", 1), ("patience", 0),
            ("seed", 0),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name.replace('_', '-')} must be an int >= {low}, got {v!r}")
        for name in ("local_lr", "server_lr", "update_clip", "max_grad_norm"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name.replace('_', '-')} must be > 0, got {v!r}")
        if self.server_lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"server-lr-schedule must be one of {LR_SCHEDULES}")
        if self.server_optimizer not in SERVER_OPTIMIZERS:
            raise ValueError(f"server-optimizer must be one of {SERVER_OPTIMIZERS}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.dp and self.weighting != "uniform":
            raise ValueError(
                "--dp needs --weighting uniform: the server would learn the sum of the "
                "clients' example counts, which DP-SGD does not cover"
            )
        if not 0.0 <= self.dropout <= 0.5:
            raise ValueError(f"dropout must be in [0, 0.5], got {self.dropout}")
        if not 8 <= self.bits <= 62:
            raise ValueError(f"bits must be in [8, 62], got {self.bits}")
        if self.neighbors not in ("auto", "full"):
            raise ValueError("neighbors must be 'auto' or 'full'")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")
        if self.epsilon is not None and not self.epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon}")
        if self.noise_multiplier is not None and not self.noise_multiplier >= 0:
            raise ValueError(f"noise-multiplier must be >= 0, got {self.noise_multiplier}")
        if self.dp and self.epsilon is None and self.noise_multiplier is None:
            raise ValueError("--dp needs --epsilon (a per-client budget) or --noise-multiplier")
        parse_partition(self.partition)

    def replace(self, **changes: Any) -> FederatedConfig:
        """A copy with ``changes`` applied (validated). Options that were left to their
        model-dependent defaults (local optimizer and lr, server lr) are worked out
        again for the copy: ``replace(dp=True)`` of a default MF config gets server lr
        1, not MF's non-private 3."""
        reset = {n: None for n in self._defaulted if n not in changes}
        return dataclasses.replace(self, **reset, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def training_key(self) -> dict[str, Any]:
        """The options that determine the trained model (for resuming checks)."""
        d = self.to_dict()
        for k in ("out", "eval_every", "patience", "eval_refit_epochs"):
            d.pop(k)
        if self.server_lr_schedule == "constant":
            d.pop("rounds")  # more rounds only continue the same run
        return d


_FIELDS = {f.name for f in dataclasses.fields(FederatedConfig)}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read options from a TOML file; returns them as FederatedConfig field names.

    Accepts a top-level table or a ``[train]`` table; keys may use ``-`` or ``_``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid TOML (with line) or unknown keys (named).
    """
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: invalid TOML: {exc}") from exc
    table = raw.get("train", raw)
    if not isinstance(table, dict):
        raise ValueError(f"{p}: [train] must be a table")
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise ValueError(f"{p}: unknown option {key!r}; known: {sorted(_FIELDS)}")
        out[name] = value
    return out
