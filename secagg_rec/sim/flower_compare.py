"""Flower 1.42's SecAgg+ and ours, side by side, in one process.

Flower (``pip install 'secagg-rec[bench]'``, ``flwr==1.42.*``) is imported only inside
the functions here: the library works without it.

**What runs on the Flower side.** Flower's own code, unmodified: the server is
``flwr.server.workflow.SecAggPlusWorkflow`` called with a
``flwr.server.compat.LegacyContext`` (a ``FedAvg`` strategy and a client manager
holding one proxy per client), and every client is ``flwr.client.mod.secaggplus_mod``
wrapped around a trivial ClientApp function that returns the client's input as its
``FitRes`` (``num_examples = 1``). Between them sits :class:`_MemoryGrid`, a
``flwr.serverapp.grid.Grid`` whose ``send_and_receive`` hands each message to the
addressed client's mod, synchronously, one client after the other. Every message goes
through Flower's wire representation: it is deflated into Flower's content-addressed
objects (``get_all_nested_objects(...).deflate()``, what Flower 1.42 pushes over gRPC)
and inflated again on the other side, so the receiver never shares objects with the
sender and the byte counts are Flower's payload (no gRPC/HTTP framing, like ours).
A client that drops at a stage simply never gets that stage's message (as if it had
vanished before replying; the workflow runs with ``timeout=None`` and gets the replies
that exist). Flower's client state lives in its ``Context.state`` as in a real
deployment.

**Timing.** Client seconds are measured around each client's handling of a message
(inflating it, the mod, deflating the reply); server seconds are the workflow's wall
time minus the clients' seconds (so they include the server-side deflating and
inflating). Ours are measured the same way by :mod:`secagg_rec.secagg.driver`.

**Settings matched.** Same ``n``, vector length ``m``, neighbour count (Flower's
``num_shares`` counts the client itself: ``num_shares = k + 1``), threshold (both
count holders including the client itself), dropped clients and stage, and the same
float inputs (uniform on ``[-1, 1]`` from ``(seed, client id)``). Flower uses
``clipping_range = 1`` (inputs are already in range), its default
``quantization_range = 2**22`` and ``modulus_range = 2**32``, ``max_weight = 1`` (so
its weight factor costs no precision); the global model sent with the fit
instruction is empty, so the bytes are SecAgg's alone. We use ``b = 32``-bit words
and :class:`~secagg_rec.encoding.Quantizer` ``.fit`` for ``n`` clients. Errors are
of the decoded **mean** against the float mean of the survivors' inputs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from secagg_rec.encoding import Quantizer
from secagg_rec.sim.simulate import (
    SimulationSpec,
    choose_dropouts,
    client_input,
    run_simulation,
)

__all__ = [
    "FLOWER_STAGES",
    "FlowerCase",
    "behaviour_cases",
    "flower_available",
    "flower_version",
    "run_flower_secaggplus",
    "run_ours",
]

#: Our stage -> the Flower SecAgg+ stage at which a client that drops there stops
#: answering (Flower has no consistency stage: it goes from masked vectors to unmask).
FLOWER_STAGES = {
    "advertise": 0,  # setup
    "share": 1,  # share_keys
    "masked": 2,  # collect_masked_vectors
    "consistency": 3,  # unmask
    "unmask": 3,  # unmask
}
_FLOWER_STAGE_NAMES = ("setup", "share_keys", "collect_masked_vectors", "unmask")
_NODE_OFFSET = 1000  # Flower node id = our client id + this (1 is the SuperLink's id)


def flower_available() -> bool:
    """True if ``flwr`` can be imported."""
    return importlib.util.find_spec("flwr") is not None


def flower_version() -> str | None:
    """The installed ``flwr`` version, or None."""
    if not flower_available():
        return None
    from importlib.metadata import version

    return version("flwr")


@dataclass(frozen=True, kw_only=True)
class FlowerCase:
    """One setting to run in both libraries.

    Args:
        name: label.
        clients: ``n``.
        dim: floats per client.
        neighbors: ``k`` (ours); Flower gets ``num_shares = k + 1``.
        threshold: ``t`` (both count holders including the client itself).
        dropout: fraction of clients dropping; drop_stage: ours (see
            :data:`FLOWER_STAGES` for Flower's).
        seed: inputs and dropouts.
        quantization_range / modulus_range / clipping_range: Flower's quantization.
        ours_levels: if set, ours uses a quantizer with this many levels per client
            (``2 * clip * scale``) instead of ``Quantizer.fit`` (to show the wrap check).
    """

    name: str
    clients: int
    dim: int
    neighbors: int
    threshold: int
    dropout: float = 0.0
    drop_stage: str = "consistency"
    seed: int = 0
    quantization_range: int = 1 << 22
    modulus_range: int = 1 << 32
    clipping_range: float = 1.0
    ours_levels: int | None = None

    @property
    def spec(self) -> SimulationSpec:
        return SimulationSpec(
            clients=self.clients,
            dim=self.dim,
            neighbors=self.neighbors,
            threshold=self.threshold,
            dropout=self.dropout,
            drop_stage=self.drop_stage,
            bits=32,
            seed=self.seed,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "clients": self.clients,
            "dim": self.dim,
            "neighbors": self.neighbors,
            "flower_num_shares": self.neighbors + 1,
            "threshold": self.threshold,
            "dropout": self.dropout,
            "dropped": len(choose_dropouts(self.spec)),
            "drop_stage": self.drop_stage,
            "flower_drop_stage": _FLOWER_STAGE_NAMES[FLOWER_STAGES[self.drop_stage]],
            "seed": self.seed,
            "flower_quantization_range": self.quantization_range,
            "flower_modulus_range": self.modulus_range,
        }


def _mean_error(survivors: Sequence[int], seed: int, dim: int, mean: np.ndarray) -> float:
    exact = np.zeros(dim)
    for cid in survivors:
        exact += client_input(seed, cid, dim)
    exact /= max(len(survivors), 1)
    return float(np.max(np.abs(np.asarray(mean, dtype=np.float64) - exact)))


# ----------------------------------------------------------------------- ours


def run_ours(case: FlowerCase) -> dict[str, Any]:
    """Run the case with :mod:`secagg_rec` (in this process); JSON-ready dict.

    Keys: ``ok``, ``error`` (why it failed or was refused), ``client_seconds_total``,
    ``client_seconds_mean`` (per client that took part), ``server_seconds``,
    ``wall_seconds``, ``bytes_up_per_client``, ``bytes_down_per_client`` (mean over
    the ``n`` clients), ``survivors``, ``max_abs_error_mean``.
    """
    spec = case.spec
    out: dict[str, Any] = {"library": "secagg_rec"}
    if case.ours_levels is not None:
        try:
            Quantizer(bits=32, clip=case.clipping_range,
                      scale=case.ours_levels / (2 * case.clipping_range),
                      max_clients=case.clients)
        except ValueError as exc:
            fit = Quantizer.fit(bits=32, clip=case.clipping_range, max_clients=case.clients)
            levels = 2 * fit.clip * fit.scale
            return {**out, "ok": False, "refused": True,
                    "error": f"ValueError: {exc}",
                    "note": f"Quantizer.fit(bits=32, max_clients={case.clients}) instead "
                    f"uses {levels:.4g} levels per client"}
    try:
        run = run_simulation(spec)
    except ValueError as exc:
        return {**out, "ok": False, "refused": True, "error": f"ValueError: {exc}"}
    s = run.summary
    res = run.result
    out.update(
        ok=s["ok"],
        error=s.get("reason"),
        client_seconds_total=s["client_seconds_total"],
        client_seconds_mean=s["client_seconds_mean"],
        server_seconds=s["server_seconds"],
        wall_seconds=s["wall_seconds"],
        bytes_up_per_client=s["bytes_up_per_client"],
        bytes_down_per_client=s["bytes_down_per_client"],
        survivors=s["survivors"],
        client_errors=s["client_errors"],
    )
    if res.ok:
        quant = Quantizer.fit(bits=run.config.bits, clip=1.0, max_clients=spec.clients)
        mean = quant.decode_sum(res.aggregate) / len(res.survivors)
        out["max_abs_error_mean"] = _mean_error(res.survivors, spec.seed, spec.dim, mean)
    else:
        out["max_abs_error_mean"] = None
    return out


# --------------------------------------------------------------------- Flower


@contextlib.contextmanager
def _flower_session() -> Iterator[list[str]]:
    """Set Flower's process-wide task identity and capture its log; restore both."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    saved = {a: TaskIdentity.__dict__.get(a) for a in ("_run_id", "_node_id", "_task_id")}
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    TaskIdentity.task_id = 1
    logger = logging.getLogger("flwr")
    records: list[str] = []

    class _Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(f"{record.levelname}: {record.getMessage()}")

    handler = _Capture(level=logging.INFO)
    old_handlers, old_level, old_prop = list(logger.handlers), logger.level, logger.propagate
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield records
    finally:
        logger.handlers, logger.propagate = old_handlers, old_prop
        logger.setLevel(old_level)
        for attr, value in saved.items():
            setattr(TaskIdentity, attr, value)


def _make_grid(inputs: dict[int, np.ndarray], drops: dict[int, int]) -> Any:
    from flwr.app import Context, Message, RecordDict
    from flwr.client.mod.secure_aggregation.secaggplus_mod import secaggplus_mod
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
    from flwr.compat.common import recorddict_compat as compat
    from flwr.serverapp.grid import Grid
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
    from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

    def deflate(msg: Any) -> tuple[Any, dict[str, bytes], int]:
        objs = {oid: o.deflate() for oid, o in get_all_nested_objects(msg).items()}
        return msg.object_id, objs, sum(len(b) for b in objs.values())

    class _MemoryGrid(Grid):
        """Deliver each message to the addressed client's ``secaggplus_mod``, in turn."""

        def __init__(self) -> None:
            self.stage = -1
            self.contexts = {
                nid: Context(run_id=1, node_id=nid, node_config={}, state=RecordDict(),
                             run_config={})
                for nid in inputs
            }
            self.client_seconds = dict.fromkeys(inputs, 0.0)
            self.bytes_up = dict.fromkeys(inputs, 0)
            self.bytes_down = dict.fromkeys(inputs, 0)
            self.errors: dict[int, str] = {}

        def set_run(self, run: Any) -> None:  # pragma: no cover - unused by the workflow
            pass

        @property
        def run(self) -> Any:  # pragma: no cover - unused by the workflow
            return None

        def create_message(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
            raise NotImplementedError

        def get_node_ids(self) -> list[int]:
            return list(inputs)

        def push_messages(self, messages: Any) -> Any:  # pragma: no cover
            raise NotImplementedError

        def pull_messages(self, message_ids: Any) -> Any:  # pragma: no cover
            raise NotImplementedError

        def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Any]:
            self.stage += 1
            replies = []
            for msg in messages:
                nid = msg.metadata.dst_node_id
                drop = drops.get(nid)
                if drop is not None and drop <= self.stage:
                    continue  # vanished: never answers this stage or later ones
                oid, objs, size = deflate(msg)  # server side
                t0 = time.perf_counter()
                received = inflate_object_from_contents(oid, objs)

                def call_next(m: Any, ctx: Any, nid: int = nid) -> Any:
                    res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([inputs[nid]]), 1,
                                 {})
                    return Message(compat.fitres_to_recorddict(res, keep_input=True),
                                   reply_to=m)

                try:
                    reply = secaggplus_mod(received, self.contexts[nid], call_next)
                    roid, robjs, rsize = deflate(reply)
                except Exception as exc:  # Flower's clients raise plain exceptions
                    self.client_seconds[nid] += time.perf_counter() - t0
                    self.errors[nid] = f"{_FLOWER_STAGE_NAMES[self.stage]}: " \
                                       f"{type(exc).__name__}: {exc}"
                    continue
                self.client_seconds[nid] += time.perf_counter() - t0
                self.bytes_down[nid] += size
                self.bytes_up[nid] += rsize
                replies.append(inflate_object_from_contents(roid, robjs))  # server side
            return replies

    return _MemoryGrid()


def run_flower_secaggplus(case: FlowerCase) -> dict[str, Any]:
    """Run the case with Flower's SecAgg+ (module docstring); JSON-ready dict.

    Keys as :func:`run_ours`, plus ``log`` (Flower's warnings and errors) and
    ``client_error_examples`` (distinct client exceptions, with the stage).

    Raises:
        ImportError: ``flwr`` is not installed.
    """
    if not flower_available():
        raise ImportError("flwr is not installed: pip install 'secagg-rec[bench]'")
    from flwr.app import ConfigRecord, Context, RecordDict
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.client_proxy import ClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey
    from flwr.server.workflow.secure_aggregation.secaggplus_workflow import (
        SecAggPlusWorkflow,
    )

    class _Proxy(ClientProxy):
        def __init__(self, nid: int) -> None:
            super().__init__(str(nid))
            self.node_id = nid

        def get_properties(self, *a: Any, **k: Any) -> Any:  # pragma: no cover
            raise NotImplementedError

        get_parameters = fit = evaluate = reconnect = get_properties

    n, dim, seed = case.clients, case.dim, case.seed
    ids = list(range(1, n + 1))
    inputs = {cid + _NODE_OFFSET: client_input(seed, cid, dim) for cid in ids}
    dropped = choose_dropouts(case.spec)
    drops = {cid + _NODE_OFFSET: FLOWER_STAGES[case.drop_stage] for cid in dropped}
    out: dict[str, Any] = {"library": f"flwr {flower_version()}"}
    with _flower_session() as log_lines:
        grid = _make_grid(inputs, drops)
        manager = SimpleClientManager()
        for nid in inputs:
            manager.register(_Proxy(nid))
        strategy = FedAvg(fraction_fit=1.0, min_fit_clients=n, min_available_clients=n,
                          fraction_evaluate=0.0)
        context = LegacyContext(
            Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}),
            strategy=strategy,
            client_manager=manager,
        )
        context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
            {WorkflowKey.CURRENT_ROUND: 1})
        context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
            ndarrays_to_parameters([]), keep_input=True)
        workflow = SecAggPlusWorkflow(
            num_shares=case.neighbors + 1,
            reconstruction_threshold=case.threshold,
            max_weight=1.0,
            clipping_range=case.clipping_range,
            quantization_range=case.quantization_range,
            modulus_range=case.modulus_range,
        )
        t0 = time.perf_counter()
        error = None
        try:
            workflow(grid, context)
        except Exception as exc:  # Flower's server raises plain exceptions
            error = f"server raised {type(exc).__name__}: {exc}"
        wall = time.perf_counter() - t0
        params = compat.arrayrecord_to_parameters(
            context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
        result = parameters_to_ndarrays(params)
    client_total = sum(grid.client_seconds.values())
    took_part = [nid for nid, secs in grid.client_seconds.items() if secs > 0]
    completed = any("Secure aggregation completed" in line for line in log_lines)
    problems = [line for line in log_lines if not line.startswith("INFO")]
    ok = error is None and completed and bool(result)
    survivors = [cid for cid in ids if drops.get(cid + _NODE_OFFSET, 9) >= 3]
    examples: dict[str, str] = {}
    for nid, text in grid.errors.items():
        stage, kind = text.split(": ", 2)[:2]
        examples.setdefault(f"{stage}: {kind}", f"node {nid} in {text}")
    if not ok and error is None:
        errors = [line for line in problems if line.startswith("ERROR")]
        error = "workflow halted" + (f" ({errors[-1]})" if errors else "")
    out.update(
        ok=ok,
        error=error,
        client_seconds_total=client_total,
        client_seconds_mean=client_total / max(len(took_part), 1),
        server_seconds=wall - client_total,
        wall_seconds=wall,
        bytes_up_per_client=float(np.mean(list(grid.bytes_up.values()))),
        bytes_down_per_client=float(np.mean(list(grid.bytes_down.values()))),
        survivors=len(survivors) if ok else 0,
        client_errors=len(grid.errors),
        client_error_examples=list(examples.values())[:5],
        log=problems[:20],
    )
    if ok:
        out["max_abs_error_mean"] = _mean_error(survivors, seed, dim, result[0])
    else:
        out["max_abs_error_mean"] = None
    return out


def behaviour_cases(seed: int = 0, *, clients: int = 20, dim: int = 1000) -> list[FlowerCase]:
    """Small cases where the two libraries behave differently (see docs/benchmarks.md).

    * ``drop-during-key-sharing``: one client drops before sending its shares.
    * ``quantization-beyond-modulus``: a quantization range ``L`` (a power of two) with
      ``clients x L >= 2**33``, twice Flower's default ``2**32`` modulus (``L = 2**29``
      for 20 clients, ``2**30`` for 10).
    * ``even-num-shares``: ``k = 5`` neighbours, i.e. Flower's ``num_shares = 6``.

    Raises:
        ValueError: ``clients`` odd or below 10 (the cases need an even n >= 10).
    """
    if clients < 10 or clients % 2:
        raise ValueError(f"behaviour cases need an even number of clients >= 10, got {clients}")
    levels = 1 << (33 - clients.bit_length() + 1)  # clients x levels >= 2**33 > 2**32
    return [
        FlowerCase(name="drop-during-key-sharing", clients=clients, dim=dim, neighbors=6,
                   threshold=4, dropout=1 / clients, drop_stage="share", seed=seed),
        FlowerCase(name="quantization-beyond-modulus", clients=clients, dim=dim, neighbors=6,
                   threshold=4, seed=seed, quantization_range=levels, ours_levels=levels),
        FlowerCase(name="even-num-shares", clients=clients, dim=dim, neighbors=5, threshold=3,
                   seed=seed),
    ]
