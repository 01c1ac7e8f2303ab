"""Centralized (non-federated, non-private) training: the reference for every model.

One loop for all models: each epoch draws fresh negatives
(:func:`~secagg_rec.rec.sampling.training_examples`, the NCF recipe), shuffles, and
runs Adam on binary cross-entropy with logits. After every epoch the model is scored on
the **validation** items (sampled protocol, HR@K then NDCG@K); the best epoch's weights
are kept, training stops after ``patience`` epochs without improvement, and only then is
the **test** set scored, once. Nothing is chosen on test.

Everything is deterministic given ``TrainConfig.seed``: negatives, shuffling and the
model's initial weights (pass the same seed to :func:`~secagg_rec.rec.models.build_model`).
The global torch RNG is not used.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from secagg_rec.rec.evaluate import evaluate_sampled
from secagg_rec.rec.models import RecommenderModel
from secagg_rec.rec.sampling import training_examples
from secagg_rec.rec.splits import LeaveOneOutSplit

__all__ = ["TrainConfig", "TrainResult", "train_centralized"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of :func:`train_centralized`.

    Attributes:
        epochs: most epochs to run, >= 1.
        batch_size: examples per Adam step, >= 1.
        lr: Adam learning rate, > 0.
        weight_decay: Adam L2 penalty, >= 0.
        negatives_per_positive: sampled negatives per training positive, >= 0 (NCF: 4).
        patience: stop after this many epochs without a better validation score;
            ``None`` runs all ``epochs``.
        k: cut-off of the validation metric (HR@k, ties by NDCG@k), >= 1.
        seed: >= 0; fixes negatives, shuffling and the evaluation tie-break.
    """

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    negatives_per_positive: int = 4
    patience: int | None = 5
    k: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1), ("negatives_per_positive", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        for name, low in (("k", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if self.patience is not None and (
            isinstance(self.patience, bool)
            or not isinstance(self.patience, int)
            or self.patience < 1
        ):
            raise ValueError(f"patience must be None or an int >= 1, got {self.patience!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")


@dataclass
class TrainResult:
    """What :func:`train_centralized` returns.

    Attributes:
        model: the trained model, holding the best epoch's weights.
        config: the configuration used.
        best_epoch: 1-based epoch with the best validation score.
        val: validation metrics at ``best_epoch`` (``HR@k``, ``NDCG@k``, ``users``).
        test: test metrics of the restored model, or ``None`` if not asked for.
        history: one dict per epoch run: ``epoch``, ``loss`` (mean BCE), ``HR@k``,
            ``NDCG@k`` on validation, ``seconds``.
        seconds: wall-clock training time, evaluation included.
    """

    model: RecommenderModel
    config: TrainConfig
    best_epoch: int
    val: dict[str, float]
    test: dict[str, float] | None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the model)."""
        return {
            "model": type(self.model).__name__,
            "config": asdict(self.config),
            "best_epoch": self.best_epoch,
            "val": self.val,
            "test": self.test,
            "history": self.history,
            "seconds": self.seconds,
        }


def train_centralized(
    model: RecommenderModel,
    split: LeaveOneOutSplit,
    config: TrainConfig | None = None,
    *,
    evaluate_test: bool = True,
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` on all training interactions of ``split``; pick the epoch on validation.

    Args:
        model: a freshly built model sized for ``split`` (``n_users``, ``n_items``).
        split: the leave-one-out split.
        config: hyperparameters (default :class:`TrainConfig()`).
        evaluate_test: score the test set once after training.
        progress: show a tqdm bar over epochs on stderr.

    Returns:
        A :class:`TrainResult`; ``model`` is modified in place and restored to the best
        epoch's weights.

    Raises:
        TypeError: arguments of the wrong type.
        ValueError: a model sized differently from the split.
    """
    if not isinstance(model, RecommenderModel):
        raise TypeError(f"model must be a RecommenderModel, got {type(model).__name__}")
    if not isinstance(split, LeaveOneOutSplit):
        raise TypeError(f"split must be a LeaveOneOutSplit, got {type(split).__name__}")
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if (model.n_users, model.n_items) != (split.n_users, split.n_items):
        raise ValueError(
            f"model is sized for {model.n_users} users x {model.n_items} items, the split "
            f"has {split.n_users} x {split.n_items}"
        )

    started = time.perf_counter()
    hr_key, ndcg_key = f"HR@{config.k}", f"NDCG@{config.k}"
    optimizer = _adam(model, config)
    loss_fn = nn.BCEWithLogitsLoss()
    history: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_epoch, best_val, best_state = 0, {}, None
    stale = 0
    epochs = range(1, config.epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=type(model).__name__, unit="epoch", leave=False)
    for epoch in epochs:
        t0 = time.perf_counter()
        loss = _run_epoch(model, split, config, epoch, optimizer, loss_fn)
        model.eval()
        val = evaluate_sampled(model, split, which="val", k=config.k, seed=config.seed)
        history.append(
            {
                "epoch": epoch,
                "loss": loss,
                hr_key: val[hr_key],
                ndcg_key: val[ndcg_key],
                "seconds": time.perf_counter() - t0,
            }
        )
        score = (val[hr_key], val[ndcg_key])
        if best is None or score > best:
            best, best_epoch, best_val, stale = score, epoch, val, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if config.patience is not None and stale >= config.patience:
                break
    assert best_state is not None  # at least one epoch ran
    model.load_state_dict(best_state)
    model.eval()
    test = (
        evaluate_sampled(model, split, which="test", k=config.k, seed=config.seed)
        if evaluate_test
        else None
    )
    return TrainResult(
        model=model,
        config=config,
        best_epoch=best_epoch,
        val=best_val,
        test=test,
        history=history,
        seconds=time.perf_counter() - started,
    )


def _adam(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam, fused when this torch build supports it on CPU (2-3x faster steps)."""
    try:
        return torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _run_epoch(
    model: RecommenderModel,
    split: LeaveOneOutSplit,
    config: TrainConfig,
    epoch: int,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
) -> float:
    """One pass over fresh examples; returns the mean training loss."""
    examples = training_examples(
        split,
        negatives_per_positive=config.negatives_per_positive,
        seed=config.seed,
        epoch=epoch - 1,
    )
    users, items, labels = examples.tensors()
    shuffle_seed = np.random.SeedSequence([config.seed, epoch]).generate_state(1, np.uint64)[0]
    gen = torch.Generator().manual_seed(int(shuffle_seed) >> 1)
    order = torch.randperm(len(examples), generator=gen)
    model.train()
    total, count = 0.0, 0
    for start in range(0, order.numel(), config.batch_size):
        idx = order[start : start + config.batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(users[idx], items[idx]), labels[idx])
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * idx.numel()
        count += idx.numel()
    return total / max(count, 1)
