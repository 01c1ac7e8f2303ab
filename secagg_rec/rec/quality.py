"""Reproduce the recommendation-quality reference numbers (centralized, no privacy).

:func:`run_quality_benchmark` runs, for each seed, the leave-one-out split with that
seed, the random and popularity baselines, and centralized training of the learned
models; each learned model tries every hyperparameter candidate it is given, keeps
the one with the best **validation** HR@K (ties: NDCG@K), with its best epoch, and
only then scores the **test** set. The summary is the mean (and standard deviation)
over seeds, next to the reference numbers of issue 4 (ML-100K, test split, mean of 3
seeds, HR@10): random 0.10, popularity 0.33, MF 0.60 (NDCG@10 0.32), NeuMF 0.56.

Command line (prints a table, or JSON with ``--json``)::

    python -m secagg_rec.rec.quality --data ../shared/data/ml-100k --seeds 0 1 2

``--grid`` lets MF choose among :data:`GRID_CANDIDATES` (four settings) on validation.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from secagg_rec.rec.baselines import popularity_scorer, random_scorer
from secagg_rec.rec.centralized import TrainConfig, train_centralized
from secagg_rec.rec.dataset import InteractionDataset
from secagg_rec.rec.evaluate import evaluate_full, evaluate_sampled
from secagg_rec.rec.models import MODEL_NAMES, build_model
from secagg_rec.rec.splits import leave_one_out_split

__all__ = [
    "BASELINES",
    "DEFAULT_CANDIDATES",
    "GRID_CANDIDATES",
    "REFERENCE",
    "Candidate",
    "format_summary",
    "run_quality_benchmark",
]

#: Untrained baselines understood by :func:`run_quality_benchmark`.
BASELINES: tuple[str, ...] = ("random", "popularity")

#: Issue 4's reference on MovieLens 100K (test split, mean of 3 seeds).
REFERENCE: dict[str, dict[str, float]] = {
    "random": {"HR@10": 0.10},
    "popularity": {"HR@10": 0.33},
    "mf": {"HR@10": 0.60, "NDCG@10": 0.32},
    "neumf": {"HR@10": 0.56},
}


@dataclass(frozen=True)
class Candidate:
    """One hyperparameter setting of a learned model.

    Attributes:
        train: keyword arguments of :class:`TrainConfig` (all but ``seed`` and ``k``).
        model: keyword arguments of the model's constructor (e.g. ``factors``).
    """

    train: Mapping[str, Any] = field(default_factory=dict)
    model: Mapping[str, Any] = field(default_factory=dict)


_NCF = {"epochs": 40, "batch_size": 256, "lr": 1e-3, "negatives_per_positive": 4, "patience": 5}

#: The NCF recipe (Adam 1e-3, batch 256, 4 negatives, factor 32; NeuMF MLP 64-32-16,
#: no pretraining); the number of epochs is chosen on validation.
DEFAULT_CANDIDATES: dict[str, tuple[Candidate, ...]] = {
    "mf": (Candidate(_NCF, {"factors": 32}),),
    "gmf": (Candidate(_NCF, {"factors": 32}),),
    "neumf": (Candidate(_NCF, {"factors": 32, "mlp_layers": (64, 32, 16)}),),
    "logreg": (Candidate(_NCF, {}),),
}

#: A small grid for MF, chosen per seed on validation: the NCF recipe, a larger batch
#: with a larger step, a learned item bias, and 64 factors.
GRID_CANDIDATES: dict[str, tuple[Candidate, ...]] = {
    **DEFAULT_CANDIDATES,
    "mf": (
        Candidate(_NCF, {"factors": 32}),
        Candidate({**_NCF, "batch_size": 1024, "lr": 3e-3}, {"factors": 32}),
        Candidate(_NCF, {"factors": 32, "item_bias": True}),
        Candidate(_NCF, {"factors": 64}),
    ),
}


def run_quality_benchmark(
    dataset: InteractionDataset,
    *,
    models: Sequence[str] = ("random", "popularity", "mf", "neumf"),
    seeds: Sequence[int] = (0, 1, 2),
    k: int = 10,
    candidates: Mapping[str, Sequence[Candidate]] | None = None,
    full_ranking: bool = True,
    progress: bool = False,
    on_run: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run baselines and centralized models on ``dataset`` for each seed.

    Args:
        dataset: interactions (e.g. ``load_dataset("../shared/data/ml-100k")``).
        models: names from :data:`BASELINES` and
            :data:`~secagg_rec.rec.models.MODEL_NAMES`.
        seeds: one run per seed (split negatives, initial weights, sampling), >= 0.
        k: metric cut-off, >= 1.
        candidates: hyperparameter candidates per learned model (default
            :data:`DEFAULT_CANDIDATES`); chosen on validation.
        full_ranking: also report Recall/Precision/NDCG@K over all unseen items.
        progress: tqdm bars on stderr while training.
        on_run: called with each run's record as soon as it is done.

    Returns:
        ``{"dataset": summary, "k": k, "seeds": [...], "runs": [...], "summary":
        {model: {...}}}``; each run has ``model``, ``seed``, ``val``, ``test``
        (``HR@k``, ``NDCG@k``), ``full`` (if asked), ``best_epoch``, ``candidate``
        and ``seconds``; each summary has the mean and std over seeds of every test
        metric and, on MovieLens 100K with ``k == 10``, the issue-4 reference.

    Raises:
        ValueError: unknown model, empty or negative seeds, ``k < 1``, or a learned
            model without candidates.
    """
    known = BASELINES + MODEL_NAMES
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {known}")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of ints >= 0, got {seeds!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    chosen = dict(DEFAULT_CANDIDATES if candidates is None else candidates)
    missing = [m for m in models if m in MODEL_NAMES and not chosen.get(m)]
    if missing:
        raise ValueError(f"no hyperparameter candidates for {missing}")

    runs: list[dict[str, Any]] = []
    for seed in seeds:
        split = leave_one_out_split(dataset, seed=seed)
        for name in models:
            t0 = time.perf_counter()
            if name in BASELINES:
                score = random_scorer(seed) if name == "random" else popularity_scorer(split)
                run: dict[str, Any] = {
                    "model": name,
                    "seed": seed,
                    "val": evaluate_sampled(score, split, which="val", k=k, seed=seed),
                    "test": evaluate_sampled(score, split, which="test", k=k, seed=seed),
                    "best_epoch": None,
                    "candidate": None,
                }
            else:
                score, run = _train_best(name, split, chosen[name], seed, k, progress)
            if full_ranking:
                run["full"] = evaluate_full(score, split, which="test", k=k, seed=seed)
            run["seconds"] = time.perf_counter() - t0
            runs.append(run)
            if on_run is not None:
                on_run(run)
    stats = dataset.summary()
    is_ml100k = (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100_000)
    return {
        "dataset": stats,
        "k": k,
        "seeds": list(seeds),
        "runs": runs,
        "summary": _summarize(runs, models, k, is_ml100k),
    }


def _train_best(
    name: str,
    split: Any,
    candidates: Sequence[Candidate],
    seed: int,
    k: int,
    progress: bool,
) -> tuple[Any, dict[str, Any]]:
    best = None
    for index, cand in enumerate(candidates):
        model = build_model(name, split.n_users, split.n_items, seed=seed, **dict(cand.model))
        config = TrainConfig(seed=seed, k=k, **dict(cand.train))
        result = train_centralized(model, split, config, evaluate_test=False, progress=progress)
        key = (result.val[f"HR@{k}"], result.val[f"NDCG@{k}"])
        if best is None or key > best[0]:
            best = (key, index, cand, result)
    assert best is not None
    _, index, cand, result = best
    model = result.model
    run = {
        "model": name,
        "seed": seed,
        "val": result.val,
        "test": evaluate_sampled(model, split, which="test", k=k, seed=seed),
        "best_epoch": result.best_epoch,
        "candidate": {"index": index, "train": dict(cand.train), "model": _jsonable(cand.model)},
        "config": asdict(result.config),
    }
    return model, run


def _jsonable(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


def _summarize(
    runs: list[dict[str, Any]], models: Sequence[str], k: int, is_ml100k: bool
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in models:
        mine = [r for r in runs if r["model"] == name]
        entry: dict[str, Any] = {"seeds": len(mine)}
        for part in ("test", "val", "full"):
            if part not in mine[0]:
                continue
            for metric in mine[0][part]:
                if metric == "users":
                    continue
                values = np.array([r[part][metric] for r in mine], dtype=np.float64)
                prefix = "" if part == "test" else f"{part}_"
                entry[f"{prefix}{metric}"] = float(values.mean())
                entry[f"{prefix}{metric}_std"] = float(values.std(ddof=1)) if len(mine) > 1 else 0.0
        epochs = [r["best_epoch"] for r in mine if r["best_epoch"] is not None]
        if epochs:
            entry["best_epochs"] = epochs
        entry["seconds"] = float(sum(r["seconds"] for r in mine))
        entry["reference"] = REFERENCE.get(name, {}) if k == 10 and is_ml100k else {}
        summary[name] = entry
    return summary


def format_summary(result: Mapping[str, Any]) -> str:
    """The summary as an aligned text table (test metrics, mean ± std over seeds)."""
    k = result["k"]
    rows = []
    for name, s in result["summary"].items():
        ref = s["reference"]
        rows.append(
            {
                "model": name,
                f"HR@{k}": f"{s[f'HR@{k}']:.3f} ± {s[f'HR@{k}_std']:.3f}",
                f"NDCG@{k}": f"{s[f'NDCG@{k}']:.3f} ± {s[f'NDCG@{k}_std']:.3f}",
                f"ref HR@{k}": ref.get(f"HR@{k}"),
                f"ref NDCG@{k}": ref.get(f"NDCG@{k}"),
                f"Recall@{k} (full)": _fmt(s.get(f"full_Recall@{k}")),
                f"NDCG@{k} (full)": _fmt(s.get(f"full_NDCG@{k}")),
                f"val HR@{k}": _fmt(s.get(f"val_HR@{k}")),
                "epochs": ",".join(str(e) for e in s.get("best_epochs", [])),
                "seconds": round(s["seconds"], 1),
            }
        )
    columns = list(rows[0])
    cells = [columns] + [[str(r[c]) if r[c] is not None else "" for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m secagg_rec.rec.quality``: run the benchmark and print it."""
    parser = argparse.ArgumentParser(prog="python -m secagg_rec.rec.quality")
    parser.add_argument("--data", default=None, help="dataset path or name (default synthetic)")
    parser.add_argument("--models", nargs="+", default=["random", "popularity", "mf", "neumf"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--grid", action="store_true", help="MF: choose among GRID_CANDIDATES on validation"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from secagg_rec.rec.data import load_dataset

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    def report(run: dict[str, Any]) -> None:
        print(
            f"{run['model']} seed={run['seed']}: test {run['test']} val {run['val']} "
            f"epoch={run['best_epoch']} ({run['seconds']:.1f}s)",
            file=sys.stderr,
        )

    result = run_quality_benchmark(
        load_dataset(args.data),
        models=args.models,
        seeds=args.seeds,
        k=args.k,
        candidates=GRID_CANDIDATES if args.grid else DEFAULT_CANDIDATES,
        progress=args.progress,
        on_run=report,
    )
    if args.json:
        json.dump(result, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(format_summary(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
