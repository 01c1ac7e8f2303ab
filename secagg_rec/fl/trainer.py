"""The federated training driver behind ``secagg-rec train``.

Each round:

1. the server samples ``clients_per_round`` clients (seeded by round);
2. each trains locally on its own positives plus fresh negatives, starting from the
   global shared parameters and its own private user rows (which never leave it):
   non-private clients in one vectorized batch (:mod:`secagg_rec.fl.batched`), private
   clients one by one through :func:`~secagg_rec.privacy.make_private`, whose ledger
   records the spend *before* the update can leave;
3. each clips its update per coordinate to ``update_clip``;
4. a share ``dropout`` of the round's clients vanish at a random protocol stage;
5. the updates of those whose upload completed are averaged, each client weighted 1
   (``weighting="uniform"``; always under DP, where summed counts would leak outside
   DP-SGD's guarantee) or by its example count — through secure aggregation (weight
   inside the masked vector) or in the clear;
6. the server optimizer moves the global vector;
7. every ``eval_every`` rounds the model is scored on validation; the best round is
   kept (rounds are chosen on validation, never on test);
8. a checkpoint is written atomically, so a killed run resumes where it stopped.

All randomness is derived from ``(seed, round, client)``, so a resumed run ends with
the same model as an uninterrupted one (masks use the OS CSPRNG, but they cancel
exactly). DP noise in a *simulation* is seeded for that reason; a deployment must use
unseeded noise (``make_private`` without ``seed``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from secagg_rec.errors import BudgetExceededError, ThresholdError, TrainingDivergedError
from secagg_rec.fl.aggregate import PlainAggregator, SecureAggregator
from secagg_rec.fl.batched import BatchedLocalTrainer, ClientData
from secagg_rec.fl.config import FederatedConfig, parse_partition
from secagg_rec.fl.local import ClientUpdate, LocalConfig, UserStore
from secagg_rec.fl.server_opt import ServerOptimizer, lr_scale
from secagg_rec.fl.vector import load_shared_vector, shared_vector
from secagg_rec.rec.models import RecommenderModel
from secagg_rec.secagg.driver import STAGES

__all__ = ["FederatedResult", "fedavg_weights", "prepare", "train_federated"]

CHECKPOINT = "checkpoint.pt"
LEDGER = "ledger.sqlite"
UploadHook = Callable[[int, np.ndarray], None]


def _seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    return int(np.random.default_rng(list(parts)).integers(0, 2**63 - 1))


@dataclass
class Setup:
    """Data, split, partition and model of a run (see :func:`prepare`)."""

    config: FederatedConfig
    split: Any
    partition: Any
    model: RecommenderModel
    client_examples: np.ndarray  # examples per client per round (weight with "examples")


def prepare(config: FederatedConfig, dataset: Any | None = None) -> Setup:
    """Load the data (or use ``dataset``), split it, partition the users, build the model."""
    from secagg_rec.rec.data import load_dataset
    from secagg_rec.rec.models import build_model
    from secagg_rec.rec.partition import cross_device_partition, cross_silo_partition
    from secagg_rec.rec.splits import leave_one_out_split

    if dataset is None:
        data = None if config.dataset == "synthetic" else config.data
        dataset = load_dataset(data, seed=config.seed)
    split = leave_one_out_split(dataset, seed=config.seed)
    kind, n_silos = parse_partition(config.partition)
    if kind == "device":
        partition = cross_device_partition(split.n_users)
    else:
        partition = cross_silo_partition(split.n_users, n_silos, seed=config.seed)
    options: dict[str, Any] = {}
    if config.model != "logreg":
        options["factors"] = config.factors
    if config.item_bias and config.model == "mf":
        options["item_bias"] = True
    model = build_model(config.model, split.n_users, split.n_items, seed=config.seed, **options)
    counts = np.diff(split.train_indptr)
    examples = np.array(
        [int(counts[u].sum()) * (1 + config.negatives) for u in partition.client_users]
    )
    return Setup(config, split, partition, model, examples)


@dataclass
class FederatedResult:
    """Outcome of :func:`train_federated`; :meth:`to_json` is the CLI's ``--json``."""

    config: FederatedConfig
    test: dict[str, float]
    val: dict[str, float]
    best_round: int
    rounds_run: int
    clients: int
    epsilon: float | None
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    secagg_seconds: float = 0.0
    skipped_rounds: int = 0
    refused_clients: int = 0
    model: RecommenderModel | None = None
    resumed_from: int = 0

    def to_json(self) -> dict[str, Any]:
        c = self.config
        return {
            "hr@10": self.test.get("HR@10"),
            "ndcg@10": self.test.get("NDCG@10"),
            "val_hr@10": self.val.get("HR@10"),
            "val_ndcg@10": self.val.get("NDCG@10"),
            "best_round": self.best_round,
            "rounds": self.rounds_run,
            "clients": self.clients,
            "clients_per_round": min(c.clients_per_round, self.clients),
            "epsilon": self.epsilon,
            "delta": c.delta if c.dp else None,
            "secagg": c.secagg,
            "dp": c.dp,
            "dropout": c.dropout,
            "model": c.model,
            "dataset": c.dataset,
            "partition": c.partition,
            "seconds": self.seconds,
            "secagg_seconds": self.secagg_seconds,
            "skipped_rounds": self.skipped_rounds,
            "refused_clients": self.refused_clients,
            "resumed_from_round": self.resumed_from,
            "config": c.to_dict(),
            "history": self.history,
        }


def fedavg_weights(updates: list[ClientUpdate], weighting: str) -> dict[int, float]:
    """Each client's weight in the server's average (see ``FederatedConfig.weighting``).

    ``"uniform"``: 1.0 each (forced under DP, where the revealed sum of example counts
    would not be covered by DP-SGD); ``"examples"``: the client's example count.

    Raises:
        ValueError: an unknown ``weighting``.
    """
    if weighting == "uniform":
        return {u.client: 1.0 for u in updates}
    if weighting == "examples":
        return {u.client: float(u.examples) for u in updates}
    raise ValueError(f"unknown weighting {weighting!r}")


def _refit_users(setup: Setup, x: np.ndarray, store: UserStore, local: LocalConfig,
                 epochs: int, round_index: int) -> UserStore:
    """Every client refits its own user rows to the current shared model, on its own
    training data (user rows only), as a device would before ranking for its user.

    Works on a copy: training is unaffected by how often one evaluates. Nothing leaves
    a client, so this costs no privacy.
    """
    from secagg_rec.rec.sampling import training_examples

    cfg = setup.config
    fresh = UserStore(setup.model)
    fresh.load_state_dict(store.state_dict())
    refit = LocalConfig(epochs=0, user_epochs=epochs, batch_size=local.batch_size,
                        lr=local.lr, optimizer=local.optimizer)
    part = setup.partition
    clients = [
        ClientData(c, part.users_of(c),
                   training_examples(setup.split, users=part.users_of(c),
                                     negatives_per_positive=cfg.negatives, seed=cfg.seed,
                                     epoch=round_index))
        for c in range(part.n_clients)
    ]
    gens = [torch.Generator().manual_seed(_seed(cfg.seed, round_index, c, 0xEF))
            for c in range(part.n_clients)]
    BatchedLocalTrainer(setup.model, refit, chunk=64).train(x, fresh, clients, gens)
    return fresh


def _evaluate(model: RecommenderModel, x: np.ndarray, store: UserStore, split: Any,
              which: str, seed: int) -> dict[str, float]:
    from secagg_rec.rec.evaluate import evaluate_sampled

    load_shared_vector(model, x)
    store.load_all_into(model)
    model.eval()
    with torch.no_grad():
        return evaluate_sampled(model, split, which=which, k=10, seed=seed)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class _PrivateClients:
    """DP-SGD local training with a ledger, one client at a time."""

    def __init__(self, setup: Setup, local: LocalConfig, ledger_path: Path) -> None:
        from secagg_rec.privacy import PrivacyLedger, calibrate_noise

        cfg = setup.config
        self.setup, self.local = setup, local
        self.ledger = PrivacyLedger(ledger_path)
        self.sigma: dict[int, float] = {}
        n_clients = setup.partition.n_clients
        per_round = min(cfg.clients_per_round, n_clients)
        # Expected participations, rounded up: what the budget is planned for.
        participations = max(1, math.ceil(cfg.rounds * per_round / n_clients))
        for c in range(n_clients):
            n = int(setup.client_examples[c])
            q = min(1.0, local.batch_size / max(n, 1))
            if cfg.epsilon is not None:
                self.ledger.set_budget(str(c), epsilon=cfg.epsilon, delta=cfg.delta)
            else:
                self.ledger.set_budget(str(c), epsilon=float("inf"), delta=cfg.delta)
            if cfg.noise_multiplier is not None:
                self.sigma[c] = float(cfg.noise_multiplier)
            else:
                assert cfg.epsilon is not None
                self.sigma[c] = calibrate_noise(
                    target_epsilon=cfg.epsilon, delta=cfg.delta, sample_rate=q,
                    epochs=local.user_epochs + local.epochs, rounds=participations,
                )

    def train(self, model: RecommenderModel, x: np.ndarray, store: UserStore,
              data: ClientData, round_index: int) -> ClientUpdate | None:
        """Train one client privately; ``None`` if its ledger refuses the round."""
        from torch import nn
        from torch.utils.data import DataLoader

        from secagg_rec.privacy import make_private

        cfg = self.setup.config
        t0 = time.perf_counter()
        load_shared_vector(model, x)
        store.load_into(model, data.users)
        model.train()
        # Two groups so that the user-only epochs can hold the shared rows still (lr 0):
        # those epochs are noisy DP-SGD steps like the others and are accounted.
        opt = self.local.make_optimizer(model.private_parameters())
        opt.add_param_group({"params": model.shared_parameters()})
        shared_group = opt.param_groups[1]
        loader = DataLoader(data.examples.tensor_dataset(), batch_size=self.local.batch_size)
        criterion = nn.BCEWithLogitsLoss()
        epochs = self.local.user_epochs + self.local.epochs
        try:
            private = make_private(
                model, opt, loader,
                max_grad_norm=cfg.max_grad_norm,
                noise_multiplier=self.sigma[data.client],
                target_delta=cfg.delta,
                epochs=epochs,
                criterion=criterion,
                ledger=self.ledger,
                client_id=str(data.client),
                round_id=round_index,
                seed=_seed(cfg.seed, round_index, data.client, 0xD9),
            )
        except BudgetExceededError:
            return None
        with private:
            popt, ploader, crit = private.optimizer, private.data_loader, private.criterion
            total, count = 0.0, 0
            for epoch in range(epochs):
                shared_group["lr"] = 0.0 if epoch < self.local.user_epochs else self.local.lr
                total, count = 0.0, 0
                for u, i, y in ploader:
                    popt.zero_grad()
                    if len(y) == 0:
                        popt.step()  # an empty Poisson batch still takes a noisy step
                        continue
                    loss = crit(model(u, i), y)
                    loss.backward()
                    popt.step()
                    total += float(loss.detach()) * len(y)
                    count += len(y)
            private.commit()  # durable before the update can leave the client
        store.save_from(model, data.users)
        delta = shared_vector(model) - x
        return ClientUpdate(
            client=data.client, delta=delta, examples=len(data.examples),
            loss=total / max(count, 1), seconds=time.perf_counter() - t0,
        )

    def max_epsilon(self) -> float:
        """The largest ε any client has spent (exact, by the ledger's accountant).

        ε grows with the sample rate and the steps and shrinks with σ, so only clients
        on the Pareto front of (q up, steps up, σ down) can hold the maximum; only those
        are accounted (PLD is too slow to run for every client at every evaluation).
        Clients whose events mix several (σ, q) are always accounted.
        """
        profiles: list[tuple[float, float, int, str]] = []
        mixed: list[str] = []
        for c in self.ledger.clients():
            events = self.ledger.spent_events(c)
            if not events:
                continue
            kinds = {(e.noise_multiplier, e.sample_rate) for e in events}
            if len(kinds) > 1:
                mixed.append(c)
                continue
            (sigma, q), = kinds
            profiles.append((sigma, q, sum(e.steps for e in events), c))
        front = [
            p for p in profiles
            if not any(o[0] <= p[0] and o[1] >= p[1] and o[2] >= p[2] and o[:3] != p[:3]
                       for o in profiles)
        ]
        seen: set[tuple[float, float, int]] = set()
        candidates = []
        for sigma, q, steps, c in front:
            if (sigma, q, steps) not in seen:
                seen.add((sigma, q, steps))
                candidates.append(c)
        values = [self.ledger.epsilon_spent(c) for c in candidates + mixed]
        return max(values) if values else 0.0


def train_federated(
    config: FederatedConfig,
    *,
    progress: bool = False,
    on_upload: UploadHook | None = None,
    setup: Setup | None = None,
) -> FederatedResult:
    """Run federated training as configured; see the module docstring.

    Args:
        config: the run's options.
        progress: show a tqdm bar on stderr.
        on_upload: called with ``(client, vector)`` for exactly what each client hands
            to the transport (see :mod:`secagg_rec.fl.aggregate`).
        setup: reuse an already prepared :class:`Setup` (tests, sweeps).

    Raises:
        ValueError: bad configuration, or ``out`` holds a checkpoint of another run.
        TrainingDivergedError: a client's local update was not finite (the checkpoint
            of the last good round stays in ``out``).
    """
    if config.centralized:
        return _train_centralized(config, setup)
    t_start = time.perf_counter()
    setup = setup or prepare(config)
    split, partition, model = setup.split, setup.partition, setup.model
    n_clients = partition.n_clients
    per_round = min(config.clients_per_round, n_clients)
    local = LocalConfig(
        epochs=config.local_epochs, user_epochs=config.local_user_epochs,
        batch_size=config.local_batch_size, lr=config.local_lr,
        optimizer=config.local_optimizer, weight_decay=config.local_weight_decay,
        negatives_per_positive=config.negatives,
    )
    out = Path(config.out) if config.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    store = UserStore(model)
    x = shared_vector(model)
    server = ServerOptimizer(name=config.server_optimizer, lr=config.server_lr)
    # The weights travel masked inside the vector (see fedavg_weights).
    weight_max = (1.0 if config.weighting == "uniform"
                  else float(setup.client_examples.max()))
    aggregator: PlainAggregator | SecureAggregator
    if config.secagg:
        aggregator = SecureAggregator(
            clip=config.update_clip, weight_max=weight_max, bits=config.bits,
            neighbors=config.neighbors, expected_dropout=max(config.dropout, 0.05),
            seed=config.seed,
        )
    else:
        aggregator = PlainAggregator()
    private = None
    if config.dp:
        ledger_dir = out if out is not None else Path(
            os.environ.get("TMPDIR", "/tmp")) / f"secagg-rec-ledger-{os.getpid()}"
        ledger_dir.mkdir(parents=True, exist_ok=True)
        private = _PrivateClients(setup, local, ledger_dir / LEDGER)
    batched = BatchedLocalTrainer(model, local, chunk=64)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"round": 0, "val": {"HR@10": -1.0}, "x": x.copy(),
                            "users": store.state_dict()}
    start_round, skipped, refused, stale, secagg_seconds = 1, 0, 0, 0, 0.0
    ckpt_path = out / CHECKPOINT if out is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        key = dict(state["key"])
        # checkpoints from before the weighting option: DP runs weighted uniformly,
        # the others by example count
        key.setdefault("weighting", "uniform" if key.get("dp") else "examples")
        if key != config.training_key():
            raise ValueError(
                f"{ckpt_path} is a checkpoint of a different configuration; use another "
                "--out or delete it"
            )
        x = state["x"]
        store.load_state_dict(state["users"])
        server.load_state_dict(state["server"])
        history, best = state["history"], state["best"]
        skipped, refused, stale = state["skipped"], state["refused"], state["stale"]
        secagg_seconds = state["secagg_seconds"]
        start_round = state["round"] + 1
    resumed_from = start_round - 1

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.rounds, initial=start_round - 1, desc="rounds", unit="round",
                   dynamic_ncols=True)
    from secagg_rec.rec.sampling import training_examples

    rounds_run = start_round - 1
    for r in range(start_round, config.rounds + 1):
        t_round = time.perf_counter()
        rng = np.random.default_rng([config.seed, r, 0x5E1])
        chosen = np.sort(rng.choice(n_clients, per_round, replace=False))
        data = [
            ClientData(
                int(c), partition.users_of(int(c)),
                training_examples(split, users=partition.users_of(int(c)),
                                  negatives_per_positive=config.negatives,
                                  seed=config.seed, epoch=r),
            )
            for c in chosen
        ]
        gens = [torch.Generator().manual_seed(_seed(config.seed, r, d.client)) for d in data]
        if private is None:
            updates = batched.train(x, store, data, gens)
        else:
            updates = []
            for d in data:
                upd = private.train(model, x, store, d, r)
                if upd is None:
                    refused += 1
                else:
                    updates.append(upd)
        t_train = time.perf_counter() - t_round
        for upd in updates:
            if not np.all(np.isfinite(upd.delta)):
                raise TrainingDivergedError(
                    f"round {r}: client {upd.client}'s local training diverged (its update "
                    f"has NaN or infinite values); lower the local learning rate "
                    f"(local_lr = {config.local_lr:g}, optimizer {config.local_optimizer}) "
                    "or the number of local epochs",
                    round=r, client=upd.client,
                )
            np.clip(upd.delta, -config.update_clip, config.update_clip, out=upd.delta)
        drop_rng = np.random.default_rng([config.seed, r, 0xD0])
        ids = [u.client for u in updates]
        n_drop = min(round(config.dropout * len(ids)), max(0, len(ids) - 2))
        dropped = drop_rng.choice(ids, n_drop, replace=False) if n_drop else []
        dropouts = {int(c): STAGES[int(drop_rng.integers(0, len(STAGES)))] for c in dropped}
        entry: dict[str, Any] = {"round": r, "clients": len(updates),
                                 "train_seconds": t_train}
        if len(updates) >= 2:
            try:
                agg = aggregator.aggregate(
                    {u.client: u.delta for u in updates},
                    fedavg_weights(updates, config.weighting),
                    dropouts=dropouts, round_index=r, on_upload=on_upload,
                )
                x = server.step(
                    x, agg.mean, lr_scale(config.server_lr_schedule, r, config.rounds)
                )
                entry.update(included=len(agg.included), aggregate_seconds=agg.seconds,
                             loss=float(np.mean([u.loss for u in updates])))
                if config.secagg:
                    secagg_seconds += agg.seconds
                    entry["secagg"] = agg.stats
            except ThresholdError as exc:
                skipped += 1
                entry["skipped"] = str(exc)
        else:
            skipped += 1
            entry["skipped"] = "fewer than 2 clients trained"
        if r % config.eval_every == 0 or r == config.rounds:
            scored = (
                _refit_users(setup, x, store, local, config.eval_refit_epochs, r)
                if config.eval_refit_epochs else store
            )
            val = _evaluate(model, x, scored, split, "val", config.seed)
            entry["val_hr@10"], entry["val_ndcg@10"] = val["HR@10"], val["NDCG@10"]
            if private is not None:
                entry["epsilon"] = private.max_epsilon()
            if val["HR@10"] > best["val"]["HR@10"]:
                best = {"round": r, "val": val, "x": x.copy(), "users": scored.state_dict()}
                stale = 0
            else:
                stale += 1
        entry["seconds"] = time.perf_counter() - t_round
        history.append(entry)
        rounds_run = r
        if ckpt_path is not None:
            _atomic_save(
                {"round": r, "key": config.training_key(), "x": x, "users": store.state_dict(),
                 "server": server.state_dict(), "history": history, "best": best,
                 "skipped": skipped, "refused": refused, "stale": stale,
                 "secagg_seconds": secagg_seconds},
                ckpt_path,
            )
        if bar is not None:
            best_val = best["val"]["HR@10"]
            post = {"best_val_hr@10": f"{best_val:.3f}" if best_val >= 0 else "n/a"}
            if "epsilon" in entry:
                post["eps"] = f"{entry['epsilon']:.3g}"
            bar.set_postfix(post)
            bar.update(1)
        if config.patience and stale >= config.patience:
            break
    if bar is not None:
        bar.close()

    # The chosen model: the best validation round.
    x_best = best["x"]
    store.load_state_dict(best["users"])
    val = _evaluate(model, x_best, store, split, "val", config.seed)
    test = _evaluate(model, x_best, store, split, "test", config.seed)
    result = FederatedResult(
        config=config, test=test, val=val, best_round=best["round"], rounds_run=rounds_run,
        clients=n_clients, epsilon=private.max_epsilon() if private is not None else None,
        seconds=time.perf_counter() - t_start, history=history,
        secagg_seconds=secagg_seconds, skipped_rounds=skipped, refused_clients=refused,
        model=model, resumed_from=resumed_from,
    )
    if out is not None:
        write_outputs(result, out)
    return result


def _train_centralized(config: FederatedConfig, setup: Setup | None) -> FederatedResult:
    """The reference: the same model trained on pooled data (Adam, epochs on validation)."""
    from secagg_rec.rec.centralized import TrainConfig, train_centralized

    t0 = time.perf_counter()
    setup = setup or prepare(config)
    res = train_centralized(
        setup.model, setup.split,
        TrainConfig(epochs=30, negatives_per_positive=config.negatives, seed=config.seed),
        evaluate_test=True,
    )
    history = [
        {"round": int(h["epoch"]), "val_hr@10": h.get("HR@10"), "val_ndcg@10": h.get("NDCG@10"),
         "loss": h.get("loss"), "seconds": h.get("seconds")}
        for h in res.history
    ]
    result = FederatedResult(
        config=config, test=res.test or {}, val=res.val, best_round=res.best_epoch,
        rounds_run=len(res.history), clients=1, epsilon=None,
        seconds=time.perf_counter() - t0, history=history, model=res.model,
    )
    if config.out:
        write_outputs(result, Path(config.out))
    return result


def write_outputs(result: FederatedResult, out: Path) -> None:
    """Write ``result.json``, ``history.csv``, ``model.pt`` and ``training.png``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    keys = sorted({k for h in result.history for k in h if not isinstance(h[k], dict)})
    with open(out / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for h in result.history:
            writer.writerow({k: h.get(k) for k in keys})
    if result.model is not None:
        torch.save(result.model.state_dict(), out / "model.pt")
    from secagg_rec.fl.plots import plot_training

    plot_training(result, out / "training.png")
