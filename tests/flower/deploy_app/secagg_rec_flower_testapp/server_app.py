"""ServerApp: run rounds with SecAggWorkflow and write each result for the test."""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

from flwr.app import ConfigRecord, Context, RecordDict
from flwr.serverapp import Grid, ServerApp

from secagg_rec.flower import SecAggSettings, SecAggWorkflow, StageReport, wait_for_nodes
from secagg_rec_flower_testapp.inputs import DIM, SCALE, WEIGHT_MAX

app = ServerApp()


def _write(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


def _pause_hook(out: Path, spec: str):
    round_text, _, stage = spec.partition(":")

    def hook(report: StageReport) -> None:
        if not spec or report.stage != stage or current["round"] != int(round_text):
            return
        _write(out / "paused.json", {"stage": stage, "accepted": list(report.accepted)})
        deadline = time.monotonic() + 120
        while not (out / "resume").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the test never resumed the round")
            time.sleep(0.1)

    current = {"round": -1}
    return hook, current


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    out = Path(str(cfg["out-dir"]))
    out.mkdir(parents=True, exist_ok=True)
    try:
        timeout = float(cfg["timeout"])
        settings = SecAggSettings(
            bits=32,
            clip=1.0,
            scale=SCALE,
            weight_scale=1.0,
            weight_max=WEIGHT_MAX,
            timeouts={
                "advertise": 2 * timeout,
                "share": timeout,
                "masked": timeout,
                "consistency": float(cfg["consistency-timeout"]),
                "unmask": timeout,
            },
        )
        hook, current = _pause_hook(out, str(cfg["pause-after"]))
        workflow = SecAggWorkflow(settings, on_stage=hook, first_round=int(cfg["first-round"]))
        wait_for_nodes(grid, int(cfg["num-nodes"]), timeout=120)
        for _ in range(int(cfg["rounds"])):
            index = workflow.next_round
            current["round"] = index
            content = RecordDict({"round": ConfigRecord({"index": index})})
            result = workflow.run_round(grid, dim=DIM, content=content)
            config = result.config
            _write(
                out / f"round-{index}.json",
                {
                    "ok": result.ok,
                    "error": result.error,
                    "aggregate": None if result.aggregate is None else result.aggregate.tolist(),
                    "mean": None if result.mean is None else result.mean.tolist(),
                    "total_weight": result.total_weight,
                    "survivors": list(result.survivors),
                    "dropped": list(result.dropped),
                    "clients": {str(k): v for k, v in result.clients.items()},
                    "config": None
                    if config is None
                    else {
                        "session_id": config.session_id.hex(),
                        "round_index": config.round_index,
                        "client_ids": list(config.client_ids),
                        "threshold": config.threshold,
                        "neighbors": config.neighbors,
                        "bits": config.bits,
                        "dim": config.dim,
                    },
                    "scale": result.quantizer.scale if result.quantizer else None,
                    "stages": [
                        {
                            "stage": s.stage,
                            "sent": list(s.sent),
                            "accepted": list(s.accepted),
                            "missing": list(s.missing),
                            "errors": {str(k): v for k, v in s.errors.items()},
                            "seconds": s.seconds,
                        }
                        for s in result.stages
                    ],
                },
            )
        _write(out / "done.json", {"ok": True})
    except Exception:
        _write(out / "done.json", {"ok": False, "error": traceback.format_exc()})
        raise
