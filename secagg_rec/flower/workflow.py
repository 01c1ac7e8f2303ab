"""The ServerApp side: drive a :class:`~secagg_rec.secagg.ServerSession` over a Flower Grid.

One call of :meth:`SecAggWorkflow.run_round` is one secure-aggregation round:

1. number the selected nodes ``1..n`` (Flower node ids never enter the protocol),
   draw a fresh session id, and build the :class:`~secagg_rec.secagg.SecAggConfig` and
   :class:`~secagg_rec.encoding.Quantizer` from :class:`SecAggSettings`;
2. ``advertise``: send each node the round setup (plus the caller's content, e.g. the
   global model); the client trains, encodes and answers with its key advertisement;
3. ``share``, ``masked``, ``consistency``, ``unmask``: send what the server session
   produced when the previous stage closed, collect replies for the stage's timeout
   (:func:`~secagg_rec.flower.exchange.exchange`), feed them to the session, close the
   stage. A node that does not answer in time, answers with an error, or sends a
   message the session refuses has dropped out at that stage;
4. decode the sum: the weighted mean ``sum(w x) / sum(w)`` (or the plain mean).

A reply is accepted only from the node the request went to, carrying the frame of
the expected stage whose ``sender`` is that node's client id; anything else is
recorded in :attr:`SecAggRoundResult.rejected` and ignored. If fewer than ``t``
clients remain, the round ends with ``ok=False`` and the session's reason, and no sum
is produced. Errors in the caller's settings raise before any message is sent.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import MessageType, RecordDict
from flwr.serverapp import Grid

from secagg_rec.encoding import Quantizer
from secagg_rec.errors import DecodeError, RemoteProtocolError, SecAggError, ThresholdError
from secagg_rec.flower.exchange import exchange
from secagg_rec.flower.settings import SecAggSettings
from secagg_rec.flower.setup import setup_to_record
from secagg_rec.flower.wire import pack, unpack
from secagg_rec.secagg import codec
from secagg_rec.secagg.config import SecAggConfig
from secagg_rec.secagg.driver import STAGES
from secagg_rec.secagg.server import ServerSession

__all__ = ["SecAggRoundResult", "SecAggWorkflow", "StageReport", "wait_for_nodes"]

logger = logging.getLogger("secagg_rec.flower")


@dataclass
class StageReport:
    """What happened in one stage (node ids throughout).

    Attributes:
        stage: stage name (:data:`~secagg_rec.secagg.driver.STAGES`).
        sent: nodes the stage's request went to.
        accepted: nodes whose reply the server session accepted.
        errors: node -> why its reply was not accepted (error reply, refused frame).
        missing: nodes that did not answer before the timeout.
        seconds: wall time of the stage, push to close.
    """

    stage: str
    sent: tuple[int, ...]
    accepted: tuple[int, ...] = ()
    errors: dict[int, str] = field(default_factory=dict)
    missing: tuple[int, ...] = ()
    seconds: float = 0.0


@dataclass
class SecAggRoundResult:
    """The outcome of one round.

    Attributes:
        ok: the round completed and ``aggregate`` is the survivors' sum.
        round_index: the round's index.
        aggregate: words of Z_{2^bits}: sum of the survivors' encoded inputs.
        mean: decoded weighted mean (or plain mean), float64, or ``None``.
        total_weight: decoded sum of the weights (weighted rounds), or ``None``.
        survivors: nodes whose inputs are in the sum.
        dropped: nodes that shared keys but whose masked input never came.
        clients: node id -> client id for this round.
        config, quantizer: what the round ran with.
        error: why the round failed, if it did.
        stages: one :class:`StageReport` per stage reached.
        rejected: ``(node id, reason)`` for every refused message (-1: unknown node).
    """

    ok: bool
    round_index: int
    aggregate: np.ndarray | None
    mean: np.ndarray | None
    total_weight: float | None
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    clients: dict[int, int]
    config: SecAggConfig | None
    quantizer: Quantizer | None
    error: str | None = None
    stages: list[StageReport] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Total wall time of the stages."""
        return sum(s.seconds for s in self.stages)


def wait_for_nodes(
    grid: Grid,
    count: int,
    *,
    timeout: float,
    poll_interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[int]:
    """Wait until at least ``count`` nodes are connected; return their ids (sorted).

    Raises:
        TimeoutError: fewer than ``count`` nodes after ``timeout`` seconds.
    """
    deadline = clock() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        if clock() >= deadline:
            raise TimeoutError(f"only {len(nodes)} of {count} nodes connected after {timeout}s")
        sleep(poll_interval)


class SecAggWorkflow:
    """Runs secure-aggregation rounds from a ServerApp.

    Args:
        settings: ring, quantization, graph, threshold and timeouts.
        message_type: Flower message type of every protocol message. ``"train"``
            (default) reaches a ClientApp's train function, where the mod sits.
        on_stage: called with each :class:`StageReport` right after its stage closed
            (before the next stage's requests go out).
        first_round: index of the first round; each :meth:`run_round` uses the next.

    Raises:
        ValueError: ``first_round`` outside ``[0, 2**32)``.
    """

    def __init__(
        self,
        settings: SecAggSettings | None = None,
        *,
        message_type: str = MessageType.TRAIN,
        on_stage: Callable[[StageReport], None] | None = None,
        first_round: int = 0,
    ) -> None:
        if not isinstance(first_round, int) or not 0 <= first_round < 1 << 32:
            raise ValueError(f"first_round must be in [0, 2**32), got {first_round!r}")
        self.settings = settings or SecAggSettings()
        self.message_type = message_type
        self.on_stage = on_stage
        self.next_round = first_round

    def run_round(
        self,
        grid: Grid,
        *,
        dim: int,
        content: RecordDict | None = None,
        node_ids: Iterable[int] | None = None,
        settings: SecAggSettings | None = None,
        message_type: str | None = None,
    ) -> SecAggRoundResult:
        """Run one round with the given (or all connected) nodes.

        Args:
            grid: the ServerApp's grid.
            dim: floats per client update (the weight word is added when weighted).
            content: records sent to every node with the setup (e.g. the global model
                and a train config); the client's train function sees exactly these.
            node_ids: the nodes to include (default: every connected node).
            settings, message_type: override the workflow's for this round (e.g. a
                securely aggregated evaluation: ``message_type="evaluate"``, metrics in
                ``[0, 1]``). Round indices stay one increasing sequence, which clients
                check.

        Returns:
            A :class:`SecAggRoundResult` (``ok=False`` with the reason if the round
            could not complete; no exception for dropouts).

        Raises:
            ValueError: ``dim < 1``, or settings that do not fit the number of nodes
                (e.g. a ring too small for ``n`` clients).
        """
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be an int >= 1, got {dim!r}")
        settings = settings or self.settings
        message_type = message_type or self.message_type
        round_index = self.next_round
        self.next_round += 1
        nodes = sorted(set(grid.get_node_ids() if node_ids is None else node_ids))
        clients = {node: cid for cid, node in enumerate(nodes, 1)}
        if len(nodes) < settings.min_clients:
            return SecAggRoundResult(
                ok=False,
                round_index=round_index,
                aggregate=None,
                mean=None,
                total_weight=None,
                survivors=(),
                dropped=(),
                clients=clients,
                config=None,
                quantizer=None,
                error=f"only {len(nodes)} nodes, need {settings.min_clients}",
            )
        quantizer = settings.quantizer_for(len(nodes))
        neighbors, threshold = settings.graph_for(len(nodes))
        config = SecAggConfig(
            session_id=os.urandom(16),
            round_index=round_index,
            client_ids=tuple(clients.values()),
            threshold=threshold,
            neighbors=neighbors,
            bits=quantizer.bits,
            dim=quantizer.encoded_length(dim),
            seed_bytes=settings.seed_bytes,
        )
        return _Round(self, grid, config, quantizer, clients, content, settings, message_type).run()


class _Round:
    """The state of one round on the server (one per :meth:`SecAggWorkflow.run_round`)."""

    def __init__(
        self,
        workflow: SecAggWorkflow,
        grid: Grid,
        config: SecAggConfig,
        quantizer: Quantizer,
        clients: dict[int, int],
        content: RecordDict | None,
        settings: SecAggSettings,
        message_type: str,
    ) -> None:
        self.workflow = workflow
        self.settings = settings
        self.message_type = message_type
        self.grid = grid
        self.config = config
        self.quantizer = quantizer
        self.clients = clients
        self.nodes = {cid: node for node, cid in clients.items()}
        self.content = content
        self.server = ServerSession(config)
        self.reports: list[StageReport] = []
        self.rejected: list[tuple[int, str]] = []

    def run(self) -> SecAggRoundResult:
        cfg = self.config
        logger.info(
            "secagg round %d: %d nodes, k=%d, t=%d, bits=%d, dim=%d",
            cfg.round_index,
            cfg.n,
            cfg.k,
            cfg.threshold,
            cfg.bits,
            cfg.dim,
        )
        outgoing = {node: self._setup_content(cid) for node, cid in self.clients.items()}
        try:
            for stage in STAGES:
                self._stage(stage, outgoing)
                t0 = time.monotonic()
                try:
                    outbox = self.server.close_stage()
                finally:
                    self.reports[-1].seconds += time.monotonic() - t0
                    self._notify()
                outgoing = {
                    self.nodes[cid]: pack(_next(stage), codec.encode(message))
                    for cid, message in outbox.items()
                }
        except (ThresholdError, RemoteProtocolError) as exc:
            logger.warning("secagg round %d failed: %s", cfg.round_index, exc)
            return self._result(error=f"{type(exc).__name__}: {exc}")
        return self._result()

    # -- stages -------------------------------------------------------------------------

    def _setup_content(self, cid: int) -> RecordDict:
        records = dict(self.content.items()) if self.content is not None else {}
        protocol = pack("advertise", None, setup_to_record(self.config, self.quantizer, cid))
        overlap = set(records) & set(protocol)
        if overlap:
            raise ValueError(f"content uses reserved record names {sorted(overlap)}")
        records.update(protocol.items())
        return RecordDict(records)

    def _stage(self, stage: str, outgoing: dict[int, RecordDict]) -> None:
        t0 = time.monotonic()
        result = exchange(
            self.grid,
            outgoing,
            message_type=self.message_type,
            timeout=self.settings.timeouts[stage],
            group_id=str(self.config.round_index),
            poll_interval=self.settings.poll_interval,
        )
        report = StageReport(
            stage=stage,
            sent=tuple(sorted(outgoing)),
            errors=dict(result.errors),
            missing=result.missing,
        )
        accepted = []
        for node, reply in result.replies.items():
            reason = self._feed(stage, node, reply.content)
            if reason is None:
                accepted.append(node)
            else:
                report.errors[node] = reason
                self.rejected.append((node, reason))
        report.accepted = tuple(sorted(accepted))
        report.seconds = time.monotonic() - t0
        self.reports.append(report)
        logger.info(
            "secagg round %d %s: %d/%d accepted, %d missing, %d errors (%.1fs)",
            self.config.round_index,
            stage,
            len(report.accepted),
            len(report.sent),
            len(report.missing),
            len(report.errors),
            report.seconds,
        )

    def _feed(self, stage: str, node: int, content: RecordDict) -> str | None:
        """Hand one reply to the server session; the reason it was refused, or None."""
        try:
            envelope = unpack(content)
            if envelope.stage != stage:
                raise RemoteProtocolError(f"reply for stage {envelope.stage!r} during {stage!r}")
            if envelope.frame is None:
                raise RemoteProtocolError("reply carries no frame")
            message = codec.decode(envelope.frame)
            sender = getattr(message, "sender", None)
            if sender != self.clients[node]:
                raise RemoteProtocolError(
                    f"node {node} is client {self.clients[node]} but sent a message as {sender}"
                )
            self.server.receive(message)
        except (RemoteProtocolError, DecodeError) as exc:
            return f"{type(exc).__name__}: {exc}"
        except SecAggError as exc:  # the session already ended: a local bug, not the node's
            raise RuntimeError(f"server session refused input: {exc}") from exc
        return None

    def _notify(self) -> None:
        if self.workflow.on_stage is not None:
            self.workflow.on_stage(self.reports[-1])

    # -- result -------------------------------------------------------------------------

    def _result(self, error: str | None = None) -> SecAggRoundResult:
        server = self.server
        ok = error is None and server.result is not None
        mean = total = None
        if ok:
            assert server.result is not None
            if self.quantizer.weighted:
                total = self.quantizer.decode_total_weight(server.result)
                if total > 0:
                    mean = self.quantizer.decode_mean(server.result)
            else:
                mean = self.quantizer.decode_mean(server.result, count=len(server.survivors))
        return SecAggRoundResult(
            ok=ok,
            round_index=self.config.round_index,
            aggregate=server.result.copy() if ok and server.result is not None else None,
            mean=mean,
            total_weight=total,
            survivors=tuple(sorted(self.nodes[c] for c in server.survivors)) if ok else (),
            dropped=tuple(sorted(self.nodes[c] for c in server.dropped)) if ok else (),
            clients=dict(self.clients),
            config=self.config,
            quantizer=self.quantizer,
            error=error,
            stages=self.reports,
            rejected=self.rejected,
        )


def _next(stage: str) -> str:
    return STAGES[STAGES.index(stage) + 1] if stage != STAGES[-1] else stage
