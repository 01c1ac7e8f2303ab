"""Send one message per node over a Flower ``Grid`` and collect replies until a deadline.

``Grid.send_and_receive`` polls every 3 s; a secure-aggregation round has five
round trips, so this module pushes once and pulls at ``poll_interval`` instead,
returning as soon as every node has answered or the time is up. A node that has not
answered by then is absent from the result: for the protocol it has dropped out. An
error reply (from the node, or from the SuperLink when the node is unavailable) marks
the node as out; a reply with content whose source node is not the one the message
went to is discarded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

__all__ = ["ExchangeResult", "exchange"]

logger = logging.getLogger("secagg_rec.flower")


@dataclass
class ExchangeResult:
    """Replies by node id, plus what went wrong for the others.

    Attributes:
        replies: node id -> reply with content.
        errors: node id -> ``"code: reason"`` of error replies (and pushes that failed).
        missing: nodes that did not answer before the deadline.
        seconds: wall time from push to return.
    """

    replies: dict[int, Message] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    missing: tuple[int, ...] = ()
    seconds: float = 0.0


def exchange(
    grid: Grid,
    contents: Mapping[int, RecordDict],
    *,
    message_type: str,
    timeout: float,
    group_id: str = "",
    poll_interval: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ExchangeResult:
    """Push ``contents[node]`` to each node and pull replies until all came or ``timeout``.

    Args:
        grid: the ServerApp's grid.
        contents: node id -> message content.
        message_type: Flower message type (e.g. ``"train"``).
        timeout: seconds to wait for replies (``> 0``); also the messages' TTL, so a
            node that comes back later does not work on a stale stage.
        group_id: Flower group id (e.g. the round number).
        poll_interval: seconds between pulls.
        clock, sleep: injected for tests.

    Raises:
        ValueError: ``timeout`` or ``poll_interval`` not positive.
    """
    if not timeout > 0 or not poll_interval > 0:
        raise ValueError("timeout and poll_interval must be > 0")
    start = clock()
    result = ExchangeResult()
    nodes = list(contents)
    messages = [
        Message(contents[node], node, message_type, ttl=float(timeout), group_id=group_id)
        for node in nodes
    ]
    ids = list(grid.push_messages(messages)) if messages else []
    pending: dict[str, int] = {}
    for node, message_id in zip(nodes, ids, strict=False):
        if message_id:
            pending[message_id] = node
        else:
            result.errors[node] = "push failed"
    for node in nodes[len(ids) :]:
        result.errors[node] = "push failed"
    deadline = start + timeout
    while pending:
        for reply in grid.pull_messages(list(pending)):
            node = pending.pop(reply.metadata.reply_to_message_id, None)
            if node is None:
                continue
            if reply.has_error():
                # From the node, or from the SuperLink saying the node is unavailable
                # (those come from Flower's own node id): either way it is out.
                result.errors[node] = f"{reply.error.code}: {reply.error.reason}"
            elif reply.metadata.src_node_id != node:
                logger.warning(
                    "discarding a reply for node %d that came from node %d",
                    node,
                    reply.metadata.src_node_id,
                )
                result.errors[node] = "reply from another node"
            else:
                result.replies[node] = reply
        if not pending or clock() >= deadline:
            break
        sleep(min(poll_interval, max(0.0, deadline - clock())))
    result.missing = tuple(sorted(pending.values()))
    result.seconds = clock() - start
    return result
