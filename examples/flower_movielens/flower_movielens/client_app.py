"""ClientApp: local (DP-)training and evaluation, wrapped in secure aggregation.

The train and evaluate functions are ordinary Flower functions: they read the global
shared parameters from ``msg.content["arrays"]`` and reply with arrays and a
``num-examples`` metric. The :func:`~secagg_rec.flower.make_secagg_mod` mod around
them turns each reply into this node's masked input of a secure-aggregation round
(the weight inside the masked vector), so neither the update, nor the example count,
nor the evaluation metrics leave the node in clear. The node's private user rows
stay in ``context.state`` between rounds.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from secagg_rec.flower import ClientPolicy, flatten, make_secagg_mod

# torch, opacus and the training code are imported inside the functions: on a
# SuperNode every protocol message starts a fresh ClientApp process, and only the
# setup message of a round (train/evaluate) needs them; the other four stages run in
# the mod on numpy and cryptography alone.

logger = logging.getLogger("flower_movielens")

ROWS = "flower_movielens.user-rows"  # this node's private rows, in context.state

app = ClientApp(mods=[make_secagg_mod(policy=ClientPolicy(min_clients=3))])


def _node(context: Context) -> tuple[int, int]:
    return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])


def _prepare(msg: Message, context: Context):
    import torch

    from flower_movielens.task import TaskKey, load_task
    from secagg_rec.fl.local import UserStore

    cfg = context.run_config
    # Many ClientApps share a machine (simulation, or several SuperNodes): one thread
    # each; torch's default thread pool oversubscribes the cores and crawls.
    torch.set_num_threads(int(cfg.get("torch-threads", 1)))
    task = load_task(TaskKey.from_run_config(cfg))
    partition, partitions = _node(context)
    users = task.users_of(partition, partitions)
    model = task.new_model()
    store = UserStore(model)
    saved = context.state.get(ROWS)
    if isinstance(saved, ArrayRecord):
        for name in store.names:
            store.rows[name][torch.as_tensor(users)] = torch.from_numpy(saved[name].numpy())
    x = flatten(msg.content["arrays"]).astype(np.float32)
    return cfg, task, users, model, store, x


def _save_rows(context: Context, store, users: np.ndarray) -> None:
    import torch

    idx = torch.as_tensor(users)
    context.state[ROWS] = ArrayRecord(
        {name: Array(store.rows[name][idx].numpy().copy()) for name in store.names}
    )


@app.train()
def train(msg: Message, context: Context) -> Message:
    from flower_movielens.task import default_ledger_dir, private_update, train_local
    from secagg_rec.errors import BudgetExceededError
    from secagg_rec.fl.local import LocalConfig
    from secagg_rec.rec.sampling import training_examples

    cfg, task, users, model, store, x = _prepare(msg, context)
    round_index = int(msg.content["config"]["server-round"])
    local = LocalConfig(
        epochs=int(cfg["local-epochs"]),
        batch_size=int(cfg["batch-size"]),
        lr=float(cfg["local-lr"]),
        optimizer=str(cfg["local-optimizer"]),
        negatives_per_positive=int(cfg["negatives"]),
    )
    examples = training_examples(
        task.split,
        users=users,
        negatives_per_positive=local.negatives_per_positive,
        seed=int(cfg["seed"]),
        epoch=round_index,
    )
    if bool(cfg["dp"]):
        partition, _ = _node(context)
        ledger_dir = Path(str(cfg["ledger-dir"]) or default_ledger_dir())
        try:
            result = private_update(
                model,
                x,
                store,
                users,
                examples,
                local,
                ledger_path=ledger_dir / f"partition-{partition}.sqlite",
                client_id=str(partition),
                round_index=round_index,
                noise_multiplier=float(cfg["noise-multiplier"]),
                max_grad_norm=float(cfg["max-grad-norm"]),
                delta=float(cfg["delta"]),
                epsilon_budget=float(cfg["epsilon-budget"]),
            )
        except BudgetExceededError as exc:
            # The details (epsilon spent) stay on the node; the server sees a dropout.
            logger.warning("privacy budget spent, sitting this round out: %s", exc)
            return Message(Error(code=0, reason="privacy budget exhausted"), reply_to=msg)
    else:
        result = train_local(model, x, store, users, examples, local, round_index=round_index)
    _save_rows(context, store, users)
    if cfg["weighting"] == "examples":
        weight = min(float(result.examples), float(cfg["weight-max"]))
    else:
        weight = 1.0
    reply = RecordDict(
        {
            "arrays": ArrayRecord({"delta": Array(result.delta.astype(np.float64))}),
            # The mod masks "num-examples" into the vector; "train-loss" never leaves.
            "metrics": MetricRecord({"num-examples": weight, "train-loss": result.loss}),
        }
    )
    return Message(reply, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    import torch

    from secagg_rec.fl.vector import load_shared_vector
    from secagg_rec.rec.evaluate import evaluate_sampled

    cfg, task, users, model, store, x = _prepare(msg, context)
    which = str(msg.content["config"]["split"])
    load_shared_vector(model, x)
    store.load_into(model, users)
    model.eval()
    with torch.no_grad():
        metrics = evaluate_sampled(
            model, task.split, which=which, k=10, seed=int(cfg["seed"]), users=users
        )
    values = np.array([metrics["HR@10"], metrics["NDCG@10"]], dtype=np.float64)
    reply = RecordDict(
        {
            "arrays": ArrayRecord({"metrics": Array(values)}),
            "metrics": MetricRecord({"num-examples": int(metrics["users"])}),
        }
    )
    return Message(reply, reply_to=msg)
