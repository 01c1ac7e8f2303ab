"""ClientApp: the secagg_rec handler with a known update per partition and round."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from secagg_rec.flower import ClientPolicy, make_secagg_handler
from secagg_rec_flower_testapp.inputs import update_of

app = ClientApp()


def update(msg: Message, context: Context):
    partition = int(context.node_config["partition-id"])
    round_index = int(msg.content["round"]["index"])
    out_dir = str(context.run_config.get("out-dir", ""))
    if out_dir:  # tell the test which node holds which partition
        nodes = Path(out_dir) / "nodes"
        nodes.mkdir(parents=True, exist_ok=True)
        tmp = nodes / f".{context.node_id}.{os.getpid()}"
        ray = sys.modules.get("ray")
        in_ray = bool(ray is not None and ray.is_initialized())  # a Ray worker (simulation)
        entry = {"node": context.node_id, "partition": partition, "ray": in_ray}
        tmp.write_text(json.dumps(entry))
        tmp.replace(nodes / f"{context.node_id}.json")
    return update_of(partition, round_index)


app.train()(make_secagg_handler(update, policy=ClientPolicy(min_clients=3)))
