"""``secagg-rec train``: federated recommendation with secure aggregation and local DP.

Options come from the defaults of :class:`~secagg_rec.fl.config.FederatedConfig`, then
from ``--config FILE.toml`` if given, then from the command line (highest priority).
"""

from __future__ import annotations

import argparse
from typing import Any

from secagg_rec.commands._output import print_json


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "train",
        help="federated training (FedAvg over secure aggregation, optional local DP-SGD)",
        description="Train a recommender with federated averaging. Each client trains on its "
        "own interactions; updates are summed by secure aggregation (on by default); with "
        "--dp every client runs DP-SGD and keeps a privacy ledger. Results (JSON, plot, "
        "checkpoint, ledger) go to --out; an interrupted run resumes from its checkpoint.",
    )
    S = argparse.SUPPRESS
    p.add_argument("--config", metavar="FILE", help="TOML file with any of these options")
    p.add_argument("--dataset", choices=("synthetic", "movielens"), default=S,
                   help="built-in synthetic data (default) or MovieLens")
    p.add_argument("--data", metavar="PATH", default=S,
                   help="MovieLens directory, ratings file, or a fetched name (ml-100k)")
    p.add_argument("--model", choices=("mf", "gmf", "neumf", "logreg"), default=S)
    p.add_argument("--factors", type=int, default=S, help="embedding size (default 32)")
    bias = p.add_mutually_exclusive_group()
    bias.add_argument("--item-bias", dest="item_bias", action="store_true", default=S,
                      help="MF: learned per-item bias (default)")
    bias.add_argument("--no-item-bias", dest="item_bias", action="store_false", default=S)
    p.add_argument("--rounds", type=int, default=S)
    p.add_argument("--clients-per-round", type=int, default=S)
    p.add_argument("--local-epochs", type=int, default=S)
    p.add_argument("--local-user-epochs", type=int, default=S,
                   help="local epochs moving only the client's own user rows, first")
    p.add_argument("--local-batch-size", type=int, default=S)
    p.add_argument("--local-lr", type=float, default=S,
                   help="local learning rate (default: 5 with SGD, 0.01 with Adam)")
    p.add_argument("--local-optimizer", choices=("sgd", "adam"), default=S,
                   help="default: sgd for mf/gmf/logreg, adam for neumf")
    p.add_argument("--local-weight-decay", type=float, default=S)
    p.add_argument("--negatives", type=int, default=S, help="negatives per positive (4)")
    p.add_argument("--server-optimizer", choices=("fedavg", "fedavgm", "fedadam"), default=S)
    p.add_argument("--server-lr", type=float, default=S,
                   help="default: 3 for MF, 1 for other models and under --dp, 0.05 for fedadam")
    p.add_argument("--server-lr-schedule", choices=("constant", "cosine"), default=S)
    p.add_argument("--update-clip", type=float, default=S,
                   help="per-coordinate bound of an update before upload")
    p.add_argument("--weighting", choices=("uniform", "examples"), default=S,
                   help="client weight in the server average: 1 each, or its example count")
    p.add_argument("--dp", action="store_true", default=S, help="local DP-SGD (Opacus)")
    p.add_argument("--epsilon", type=float, default=S, help="per-client privacy budget")
    p.add_argument("--delta", type=float, default=S)
    p.add_argument("--noise-multiplier", type=float, default=S,
                   help="DP-SGD noise σ (instead of calibrating it to --epsilon)")
    p.add_argument("--max-grad-norm", type=float, default=S, help="DP-SGD clip C")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--secagg", dest="secagg", action="store_true", default=S,
                   help="aggregate through secure aggregation (default)")
    g.add_argument("--no-secagg", dest="secagg", action="store_false", default=S,
                   help="aggregate in the clear (reference)")
    p.add_argument("--bits", type=int, default=S, help="secure-aggregation ring width")
    p.add_argument("--neighbors", choices=("auto", "full"), default=S)
    p.add_argument("--dropout", type=float, default=S,
                   help="share of each round's clients that vanish mid-round")
    p.add_argument("--partition", default=S, help="device (each user a client) or silo:N")
    p.add_argument("--centralized", action="store_true", default=S,
                   help="train on pooled data instead (the reference)")
    p.add_argument("--eval-every", type=int, default=S)
    p.add_argument("--eval-refit-epochs", type=int, default=S,
                   help="user-only epochs each client runs on a copy before scoring (3)")
    p.add_argument("--patience", type=int, default=S)
    p.add_argument("--seed", type=int, default=S)
    p.add_argument("--out", metavar="DIR", default=S,
                   help="output directory (result.json, training.png, checkpoint, ledger)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest for these small models)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


_NOT_OPTIONS = {"config", "json", "func", "command", "threads"}


def build_config(args: argparse.Namespace) -> Any:
    """Defaults <- config file <- command line."""
    from secagg_rec.fl.config import FederatedConfig, load_config_file

    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    values.update({k: v for k, v in vars(args).items() if k not in _NOT_OPTIONS})
    if values.get("data") and "dataset" not in values:
        values["dataset"] = "movielens"
    return FederatedConfig(**values)


def run(args: argparse.Namespace) -> int:
    import torch

    from secagg_rec.fl.trainer import train_federated

    torch.set_num_threads(max(1, args.threads))
    config = build_config(args)
    result = train_federated(config, progress=not args.json)
    out = result.to_json()
    if args.json:
        slim = {k: v for k, v in out.items() if k not in ("history", "config")}
        print_json(slim)
        return 0
    what = "centralized" if config.centralized else (
        f"{out['clients']} clients, {out['clients_per_round']} per round, "
        f"secure aggregation {'on' if config.secagg else 'off'}")
    print(f"{config.model} on {config.dataset} ({what})")
    print(f"test HR@10 {out['hr@10']:.4f}  NDCG@10 {out['ndcg@10']:.4f}  "
          f"(chosen on validation: round {out['best_round']}, val HR@10 {out['val_hr@10']:.4f})")
    if config.dp:
        print(f"max per-client epsilon {out['epsilon']:.3g} at delta {config.delta:g}")
    print(f"{out['rounds']} rounds in {out['seconds']:.0f} s"
          + (f" (secure aggregation {out['secagg_seconds']:.0f} s)" if config.secagg else ""))
    if config.out:
        print(f"results in {config.out}/: result.json, history.csv, training.png, model.pt"
              + (", ledger.sqlite" if config.dp else ""))
    return 0
