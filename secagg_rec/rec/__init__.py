"""secagg_rec.rec: datasets, leave-one-out splits, negative sampling, models, metrics.

The recommendation layer. It knows nothing of masks, privacy or federated rounds; the
layers above take from it a dataset, a split, per-user training examples, a model
whose private (per-user) and shared parameters are named, and an evaluation function.

========================  ===========================================================
module                    job
========================  ===========================================================
``dataset``               :class:`InteractionDataset` (arrays + dense id maps)
``loaders``               MovieLens ``u.data`` / ``ratings.dat`` / ``ratings.csv``
``synthetic``             :func:`make_synthetic`, the no-download default
``fetch``                 :func:`fetch_dataset`: download, MD5 check, unpack
``data``                  :func:`load_dataset`: what ``--data`` resolves to
``splits``                :func:`leave_one_out_split` (NCF protocol, tie rule)
``sampling``              negatives; :func:`user_training_examples` per client
``models``                MF, GMF, NeuMF, logistic regression
``metrics``, ``evaluate`` HR/NDCG (sampled), Recall/Precision/NDCG (full ranking)
``baselines``             random and popularity scorers
``partition``             cross-device and cross-silo client assignment
``centralized``           :func:`train_centralized`, the non-federated reference
``quality``               :func:`run_quality_benchmark`, the reference reproduction
========================  ===========================================================

Names are imported lazily, so ``import secagg_rec.rec`` does not load torch until a
torch-backed name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "InteractionDataset": "dataset",
    "load_ratings": "loaders",
    "load_ml100k": "loaders",
    "load_ratings_dat": "loaders",
    "load_ratings_csv": "loaders",
    "make_synthetic": "synthetic",
    "fetch_dataset": "fetch",
    "FetchError": "fetch",
    "default_cache_dir": "fetch",
    "load_dataset": "data",
    "LeaveOneOutSplit": "splits",
    "leave_one_out_split": "splits",
    "TrainingExamples": "sampling",
    "sample_unseen": "sampling",
    "training_examples": "sampling",
    "user_training_examples": "sampling",
    "RecommenderModel": "models",
    "MatrixFactorization": "models",
    "GMF": "models",
    "NeuMF": "models",
    "LogisticRegression": "models",
    "MODEL_NAMES": "models",
    "build_model": "models",
    "ScoreFn": "evaluate",
    "evaluate_sampled": "evaluate",
    "evaluate_full": "evaluate",
    "sampled_ranks": "evaluate",
    "full_ranks": "evaluate",
    "random_scorer": "baselines",
    "popularity_scorer": "baselines",
    "Partition": "partition",
    "cross_device_partition": "partition",
    "cross_silo_partition": "partition",
    "TrainConfig": "centralized",
    "TrainResult": "centralized",
    "train_centralized": "centralized",
    "Candidate": "quality",
    "run_quality_benchmark": "quality",
}

__all__ = [
    "GMF",
    "MODEL_NAMES",
    "Candidate",
    "FetchError",
    "InteractionDataset",
    "LeaveOneOutSplit",
    "LogisticRegression",
    "MatrixFactorization",
    "NeuMF",
    "Partition",
    "RecommenderModel",
    "ScoreFn",
    "TrainConfig",
    "TrainResult",
    "TrainingExamples",
    "build_model",
    "cross_device_partition",
    "cross_silo_partition",
    "default_cache_dir",
    "evaluate_full",
    "evaluate_sampled",
    "fetch_dataset",
    "full_ranks",
    "leave_one_out_split",
    "load_dataset",
    "load_ml100k",
    "load_ratings",
    "load_ratings_csv",
    "load_ratings_dat",
    "make_synthetic",
    "popularity_scorer",
    "random_scorer",
    "run_quality_benchmark",
    "sample_unseen",
    "sampled_ranks",
    "train_centralized",
    "training_examples",
    "user_training_examples",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'secagg_rec.rec' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"secagg_rec.rec.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from secagg_rec.rec.baselines import popularity_scorer, random_scorer
    from secagg_rec.rec.centralized import TrainConfig, TrainResult, train_centralized
    from secagg_rec.rec.data import load_dataset
    from secagg_rec.rec.dataset import InteractionDataset
    from secagg_rec.rec.evaluate import (
        ScoreFn,
        evaluate_full,
        evaluate_sampled,
        full_ranks,
        sampled_ranks,
    )
    from secagg_rec.rec.fetch import FetchError, default_cache_dir, fetch_dataset
    from secagg_rec.rec.loaders import load_ml100k, load_ratings, load_ratings_csv, load_ratings_dat
    from secagg_rec.rec.models import (
        GMF,
        MODEL_NAMES,
        LogisticRegression,
        MatrixFactorization,
        NeuMF,
        RecommenderModel,
        build_model,
    )
    from secagg_rec.rec.partition import Partition, cross_device_partition, cross_silo_partition
    from secagg_rec.rec.quality import Candidate, run_quality_benchmark
    from secagg_rec.rec.sampling import (
        TrainingExamples,
        sample_unseen,
        training_examples,
        user_training_examples,
    )
    from secagg_rec.rec.splits import LeaveOneOutSplit, leave_one_out_split
    from secagg_rec.rec.synthetic import make_synthetic
