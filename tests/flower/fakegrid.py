"""An in-process Flower Grid for fast tests: every node is a ClientApp in this process.

Messages go through Flower's own serialization (each message and reply is deflated and
inflated again), the node's ``Context`` persists between messages as on a SuperNode,
and the reply's source is set by the grid, not by the ClientApp. A node can be made to
vanish before it handles the message of a given stage (``drop``), or have its replies
rewritten in transit (``tamper``), to test the server's checks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
from flwr.supercore.task_identity import TaskIdentity

from secagg_rec.flower.wire import RECORD

_ids = itertools.count(1)


def act_as_server_task() -> None:
    """Flower stamps new messages with the running task's identity; outside a
    SuperLink/SuperNode nothing sets it, so act as the ServerApp task of run 1."""
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 0
    TaskIdentity.task_id = 1


def roundtrip(message: Message) -> Message:
    """Deflate and inflate ``message`` the way Flower ships it."""
    objects = get_all_nested_objects(message)
    contents = {oid: obj.deflate() for oid, obj in objects.items()}
    copy = inflate_object_from_contents(message.object_id, contents)
    copy.metadata.__dict__["_message_id"] = message.metadata.message_id
    return copy


class FakeGrid(Grid):
    """Nodes ``node_ids`` each run ``app``; ``node_config(node)`` gives their config."""

    def __init__(
        self,
        app: ClientApp,
        node_ids: Iterable[int],
        *,
        node_config: Callable[[int], dict] | None = None,
        run_config: dict | None = None,
    ) -> None:
        self.app = app
        act_as_server_task()
        self.contexts = {
            node: Context(
                run_id=1,
                node_id=node,
                node_config=(node_config(node) if node_config else {}),
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
            for node in node_ids
        }
        self.drop: dict[int, str] = {}  # node -> stage at which it vanishes
        self.tamper: Callable[[int, Message], Message] | None = None
        self.replies: dict[str, Message] = {}
        self.delivered: list[tuple[int, str]] = []  # (node, stage) handled
        self.requests: dict[tuple[int, str], Message] = {}  # as the node received them

    # Grid API ------------------------------------------------------------------------
    def set_run(self, run) -> None:  # pragma: no cover - unused
        pass

    @property
    def run(self):  # pragma: no cover - unused
        return None

    def create_message(
        self, content, message_type, dst_node_id, group_id, ttl=None
    ):  # pragma: no cover
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> list[int]:
        return sorted(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            message_id = f"m{next(_ids)}"
            message.metadata.__dict__["_message_id"] = message_id
            node = message.metadata.dst_node_id
            stage = str(message.content[RECORD]["stage"]) if RECORD in message.content else ""
            ids.append(message_id)
            if self.drop.get(node) == stage or node in self.gone:
                self.gone.add(node)
                continue
            received = roundtrip(message)
            self.requests[(node, stage)] = received
            reply = self.app(received, self.contexts[node])
            self.delivered.append((node, stage))
            reply.metadata.__dict__["_message_id"] = f"r{next(_ids)}"
            reply.metadata.__dict__["_src_node_id"] = node
            if self.tamper is not None:
                reply = self.tamper(node, reply)
            self.replies[message_id] = roundtrip(reply)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self.replies.pop(m) for m in list(message_ids) if m in self.replies]

    def send_and_receive(self, messages, *, timeout=None):  # pragma: no cover - unused
        return self.pull_messages(self.push_messages(messages))

    @property
    def gone(self) -> set[int]:
        if not hasattr(self, "_gone"):
            self._gone: set[int] = set()
        return self._gone
