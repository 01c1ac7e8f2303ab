"""ServerApp: FedAvg of the shared parameters, every round through secure aggregation.

Each round the server sends the global shared parameters to the sampled nodes; each
node trains (DP-SGD by default) and the :class:`~secagg_rec.flower.SecAggWorkflow`
returns only the weighted mean of their updates, which the server optimizer applies.
Every ``eval-every`` rounds, the validation HR@10/NDCG@10 are aggregated the same way
(each node scores its own users with its private rows; only the user-weighted mean
is revealed). The final model is scored on the test split. With ``out-dir`` set, the
history goes to ``result.json``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Context, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from flower_movielens.task import TaskKey, load_task
from secagg_rec.fl.server_opt import ServerOptimizer
from secagg_rec.flower import (
    SecAggSettings,
    SecAggWorkflow,
    flatten,
    unflatten,
    wait_for_nodes,
)

logger = logging.getLogger("flower_movielens")

app = ServerApp()


def _settings(cfg, *, clip: float, weight_max: float) -> SecAggSettings:
    timeout = float(cfg["stage-timeout"])
    return SecAggSettings(
        bits=int(cfg["bits"]),
        clip=clip,
        weighted=True,
        weight_max=weight_max,
        neighbors=str(cfg["neighbors"]),  # type: ignore[arg-type]
        timeouts={
            "advertise": 5 * timeout,  # includes local training
            "share": timeout,
            "masked": timeout,
            "consistency": timeout,
            "unmask": timeout,
        },
    )


def _evaluate(workflow, grid, template, x, which, node_ids, settings, round_index):
    content = RecordDict(
        {
            "arrays": unflatten(x, template),
            "config": ConfigRecord({"server-round": round_index, "split": which}),
        }
    )
    result = workflow.run_round(
        grid,
        dim=2,
        content=content,
        node_ids=node_ids,
        settings=settings,
        message_type=MessageType.EVALUATE,
    )
    if not result.ok or result.mean is None:
        return {"ok": False, "error": result.error}
    return {
        "ok": True,
        "HR@10": float(result.mean[0]),
        "NDCG@10": float(result.mean[1]),
        "users": result.total_weight,
        "nodes": len(result.survivors),
        "seconds": result.seconds,
    }


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    task = load_task(TaskKey.from_run_config(cfg))
    model = task.new_model()
    template = task.shared_arrays(model)
    x = flatten(template).astype(np.float32)
    weight_max = float(cfg["weight-max"]) if cfg["weighting"] == "examples" else 1.0
    train_settings = _settings(cfg, clip=float(cfg["update-clip"]), weight_max=weight_max)
    eval_settings = _settings(cfg, clip=1.0, weight_max=float(task.n_users))
    workflow = SecAggWorkflow(train_settings, first_round=1)
    server = ServerOptimizer(name=str(cfg["server-optimizer"]), lr=float(cfg["server-lr"]))
    nodes = wait_for_nodes(grid, int(cfg["min-nodes"]), timeout=300)
    logger.info("%d nodes connected; shared vector of %d floats", len(nodes), x.size)

    rounds, per_round = int(cfg["rounds"]), int(cfg["clients-per-round"])
    history: list[dict] = []
    t_start = time.monotonic()
    for r in range(1, rounds + 1):
        nodes = sorted(grid.get_node_ids())
        if 0 < per_round < len(nodes):
            rng = np.random.default_rng([int(cfg["seed"]), r])
            nodes = sorted(int(n) for n in rng.choice(nodes, per_round, replace=False))
        content = RecordDict(
            {
                "arrays": unflatten(x, template),
                "config": ConfigRecord({"server-round": r}),
            }
        )
        result = workflow.run_round(grid, dim=int(x.size), content=content, node_ids=nodes)
        entry = {
            "round": r,
            "ok": result.ok,
            "nodes": len(nodes),
            "survivors": len(result.survivors),
            "dropped_after_sharing": len(result.dropped),
            "total_weight": result.total_weight,
            "secagg_seconds": result.seconds,
            "stage_seconds": {s.stage: round(s.seconds, 3) for s in result.stages},
        }
        if result.ok and result.mean is not None:
            x = server.step(x, result.mean.astype(np.float32))
        else:
            entry["error"] = result.error
            logger.warning("round %d skipped: %s", r, result.error)
        if r % int(cfg["eval-every"]) == 0 or r == rounds:
            entry["val"] = _evaluate(workflow, grid, template, x, "val", nodes, eval_settings, r)
            logger.info("round %d: val %s", r, entry["val"])
        history.append(entry)
    test = _evaluate(
        workflow, grid, template, x, "test", sorted(grid.get_node_ids()), eval_settings, rounds
    )
    logger.info("final test: %s", test)
    out = str(cfg["out-dir"])
    if out:
        path = Path(out)
        path.mkdir(parents=True, exist_ok=True)
        payload = {
            "test": test,
            "history": history,
            "seconds": time.monotonic() - t_start,
            "config": {k: v for k, v in cfg.items()},
        }
        tmp = path / "result.json.tmp"
        tmp.write_text(json.dumps(payload, indent=1, default=str))
        tmp.replace(path / "result.json")
