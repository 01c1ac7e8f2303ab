"""The server side of a round: a sans-I/O state machine with O(dim) memory.

The server collects one message per client per stage; the transport decides when a
stage ends (a deadline, or everyone answered) and calls :meth:`ServerSession.close_stage`,
which returns the messages to send for the next stage, keyed by client id. Masked
inputs are added into one running sum as they arrive, so memory is O(dim), not
O(clients * dim). After the unmask stage closes, :attr:`ServerSession.result` holds the
sum mod ``2**bits`` of the survivors' inputs, and nothing else is learnt.

A message that is invalid, out of order, from an unknown client or a duplicate is
rejected with :class:`~secagg_rec.errors.RemoteProtocolError` and otherwise ignored:
one bad client does not sink the round. If too few clients remain at any stage the
round aborts with :class:`~secagg_rec.errors.ThresholdError` *before* the next stage's
requests go out, the running sum is wiped and :attr:`result` stays ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from secagg_rec.crypto import shamir
from secagg_rec.crypto.kdf import derive_key
from secagg_rec.crypto.keys import KeyPair, agree, verify_signature
from secagg_rec.crypto.prg import MaskExpander, reduce_words
from secagg_rec.errors import LocalProtocolError, RemoteProtocolError, SecAggError, ThresholdError
from secagg_rec.secagg import codec
from secagg_rec.secagg.client import pairwise_sign
from secagg_rec.secagg.config import SecAggConfig
from secagg_rec.secagg.messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencyResponse,
    KeyBroadcast,
    MaskedInput,
    Message,
    ShareBroadcast,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
    advertise_signing_payload,
    consistency_signing_payload,
)
from secagg_rec.secagg.transitions import Role, ServerState, next_state

__all__ = ["ServerSession"]

_SEED_BATCH = 256  # AES streams open at once while unmasking


class ServerSession:
    """The server's side of one round.

    Args:
        config: the round configuration.

    Attributes:
        result: after a successful round, the aggregate words (dtype of the ring) or
            ``None``.
        rejected: ``(client id, reason)`` for every message refused.
    """

    def __init__(self, config: SecAggConfig) -> None:
        self.config = config
        self._graph = config.graph
        self._state = ServerState.COLLECT_KEYS
        self._failure: str | None = None
        self.result: np.ndarray | None = None
        self.rejected: list[tuple[int, str]] = []
        self._adverts: dict[int, AdvertiseKeys] = {}
        self._u1: frozenset[int] = frozenset()
        self._boxes: dict[int, dict[int, bytes]] = {}  # sender -> receiver -> box
        self._u2: frozenset[int] = frozenset()
        self._expander = MaskExpander(config.dim, config.bits)
        self._sum: np.ndarray | None = None
        self._arrived: list[int] = []
        self._u3: tuple[int, ...] = ()
        self._survivor_set: frozenset[int] = frozenset()
        self._dropped: tuple[int, ...] = ()
        self._dropped_set: frozenset[int] = frozenset()
        self._signatures: dict[int, bytes] = {}
        self._u4: frozenset[int] = frozenset()
        self._seed_shares: dict[int, dict[int, bytes]] = {}  # owner -> x -> share
        self._key_shares: dict[int, dict[int, bytes]] = {}
        self._responded: set[int] = set()

    # -- public API ---------------------------------------------------------------------

    @property
    def state(self) -> ServerState:
        """The current state (see :mod:`secagg_rec.secagg.transitions`)."""
        return self._state

    @property
    def failure(self) -> str | None:
        """Why the round aborted or failed, if it did."""
        return self._failure

    @property
    def survivors(self) -> tuple[int, ...]:
        """Clients whose masked inputs are in the sum (known once that stage closes)."""
        return self._u3

    @property
    def dropped(self) -> tuple[int, ...]:
        """Clients that shared keys but whose masked input never came."""
        return self._dropped

    def receive(self, message: Message) -> None:
        """Take one client message for the current stage.

        Raises:
            RemoteProtocolError: the message is invalid, from an unknown client, a
                duplicate, from another session/round, or not for this stage; it is
                ignored and recorded in :attr:`rejected`.
            LocalProtocolError: the round already ended.
        """
        self._check_alive()
        sender = getattr(message, "sender", None)
        try:
            if next_state(Role.SERVER, self._state, type(message)) is None:
                raise RemoteProtocolError(
                    f"unexpected {type(message).__name__} in state {self._state.value}"
                )
            cfg = self.config
            if message.session_id != cfg.session_id or message.round_index != cfg.round_index:
                raise RemoteProtocolError(
                    f"{type(message).__name__} belongs to another session or round"
                )
            if sender not in cfg.id_set:
                raise RemoteProtocolError(f"message from client {sender}, not in this round")
            if sender in self._responded:
                raise RemoteProtocolError(f"client {sender} already sent this stage's message")
            handler = {
                AdvertiseKeys: self._on_advertise,
                ShareKeys: self._on_share_keys,
                MaskedInput: self._on_masked_input,
                ConsistencyResponse: self._on_consistency,
                UnmaskResponse: self._on_unmask,
            }[type(message)]
            handler(message)
            self._responded.add(sender)  # type: ignore[arg-type]
        except RemoteProtocolError as exc:
            self.rejected.append((sender if isinstance(sender, int) else -1, str(exc)))
            raise

    def receive_bytes(self, data: bytes) -> None:
        """Decode ``data`` and :meth:`receive` it (DecodeError for bad bytes)."""
        self._check_alive()
        try:
            message = codec.decode(data)
        except SecAggError as exc:
            self.rejected.append((-1, str(exc)))
            raise
        self.receive(message)

    def close_stage(self) -> dict[int, Message]:
        """End the current stage; return the next stage's messages, by client id.

        After the unmask stage this computes :attr:`result` and returns ``{}``.

        Raises:
            ThresholdError: too few clients remain; the round is ABORTED, the running
                sum wiped, and no further message is produced.
            RemoteProtocolError: revealed shares reconstruct a key that does not match
                its advertisement (a client sent bad shares); the round is FAILED.
            LocalProtocolError: the round already ended.
        """
        self._check_alive()
        closer = {
            ServerState.COLLECT_KEYS: self._close_keys,
            ServerState.COLLECT_SHARES: self._close_shares,
            ServerState.COLLECT_MASKED: self._close_masked,
            ServerState.COLLECT_CONSISTENCY: self._close_consistency,
            ServerState.COLLECT_UNMASK: self._close_unmask,
        }[self._state]
        new_state = next_state(Role.SERVER, self._state, "close")
        assert new_state is not None
        try:
            out = closer()
        except ThresholdError as exc:
            self._end(ServerState.ABORTED, str(exc))
            raise
        except SecAggError as exc:
            self._end(ServerState.FAILED, str(exc))
            raise
        self._state = new_state  # type: ignore[assignment]
        self._responded = set()
        return out

    # -- plumbing -----------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self._state in (ServerState.DONE, ServerState.ABORTED, ServerState.FAILED):
            raise LocalProtocolError(
                f"round is {self._state.value}" + (f": {self._failure}" if self._failure else "")
            )

    def _end(self, state: ServerState, reason: str) -> None:
        self._state = state
        self._failure = reason
        if self._sum is not None:
            self._sum.fill(0)
        self._sum = None
        self.result = None
        self._seed_shares.clear()
        self._key_shares.clear()

    def _need(self, count: int, what: str) -> None:
        if count < self.config.threshold:
            raise ThresholdError(f"only {count} {what}; threshold is {self.config.threshold}")

    def _common(self) -> dict[str, Any]:
        return {"session_id": self.config.session_id, "round_index": self.config.round_index}

    def _check_recoverable(self, live: Iterable[int], stage: str) -> None:
        """Every secret the unmasking needs has ``t`` holders among ``live``."""
        live_set = frozenset(live)
        t = self.config.threshold
        for u in self._u3:
            have = len(live_set.intersection(self._graph.holders(u)))
            if have < t:
                raise ThresholdError(
                    f"{stage}: survivor {u} has {have} live holders of its seed shares, need {t}"
                )
        for v in self._dropped:
            have = len(live_set.intersection(self._graph.holders(v)))
            if have < t:
                raise ThresholdError(
                    f"{stage}: dropped client {v} has {have} live holders of its key shares, "
                    f"need {t}"
                )

    # -- collecting ---------------------------------------------------------------------

    def _on_advertise(self, msg: AdvertiseKeys) -> None:
        cfg = self.config
        if cfg.authenticated and not verify_signature(
            cfg.verify_keys[msg.sender], msg.signature, advertise_signing_payload(msg)
        ):
            raise RemoteProtocolError(f"client {msg.sender}'s advertisement does not verify")
        self._adverts[msg.sender] = msg

    def _on_share_keys(self, msg: ShareKeys) -> None:
        if msg.sender not in self._u1:
            raise RemoteProtocolError(f"client {msg.sender} shares keys without advertising")
        allowed = self._u1.intersection(self._graph.neighbors(msg.sender))
        boxes: dict[int, bytes] = {}
        for receiver, box in msg.boxes:
            if receiver not in allowed:
                raise RemoteProtocolError(
                    f"client {msg.sender} sent a share box to {receiver}, not a live neighbour"
                )
            boxes[receiver] = box
        self._boxes[msg.sender] = boxes

    def _on_masked_input(self, msg: MaskedInput) -> None:
        cfg = self.config
        if msg.sender not in self._u2:
            raise RemoteProtocolError(f"masked input from client {msg.sender}, which never shared")
        if msg.bits != cfg.bits:
            raise RemoteProtocolError(f"masked input has bits={msg.bits}, round uses {cfg.bits}")
        if msg.vector.shape != (cfg.dim,):
            raise RemoteProtocolError(
                f"masked input of length {msg.vector.shape[0]}, round uses {cfg.dim}"
            )
        if self._sum is None:
            self._sum = self._expander.new_accumulator()
        np.add(self._sum, msg.vector, out=self._sum)
        self._arrived.append(msg.sender)

    def _on_consistency(self, msg: ConsistencyResponse) -> None:
        cfg = self.config
        if msg.sender not in self._survivor_set:
            raise RemoteProtocolError(f"consistency response from non-survivor {msg.sender}")
        if cfg.authenticated:
            payload = consistency_signing_payload(cfg.session_id, cfg.round_index, self._u3)
            if not verify_signature(cfg.verify_keys[msg.sender], msg.signature, payload):
                raise RemoteProtocolError(f"client {msg.sender}'s consistency signature is invalid")
        self._signatures[msg.sender] = msg.signature

    def _on_unmask(self, msg: UnmaskResponse) -> None:
        cfg = self.config
        if msg.sender not in self._u4:
            raise RemoteProtocolError(f"unmask response from client {msg.sender}, not asked")
        holders_of = self._graph.holders
        # sets built once per round (building them per reply made this stage O(n^2))
        survivors, dropped = self._survivor_set, self._dropped_set
        seed_len = shamir.share_size(cfg.seed_bytes)
        key_len = shamir.share_size(32)
        for owner, share in msg.seed_shares:
            if owner not in survivors or msg.sender not in holders_of(owner):
                raise RemoteProtocolError(f"unrequested seed share of client {owner}")
            if len(share) != seed_len:
                raise RemoteProtocolError("seed share of the wrong length")
        for owner, share in msg.key_shares:
            if owner not in dropped or msg.sender not in holders_of(owner):
                raise RemoteProtocolError(f"unrequested key share of client {owner}")
            if len(share) != key_len:
                raise RemoteProtocolError("key share of the wrong length")
        x = cfg.x_of[msg.sender]
        for owner, share in msg.seed_shares:
            self._seed_shares.setdefault(owner, {})[x] = share
        for owner, share in msg.key_shares:
            self._key_shares.setdefault(owner, {})[x] = share

    # -- closing ------------------------------------------------------------------------

    def _close_keys(self) -> dict[int, Message]:
        self._u1 = frozenset(self._adverts)
        self._need(len(self._u1), "clients advertised keys")
        out: dict[int, Message] = {}
        for u in sorted(self._u1):
            peers = tuple(self._adverts[v] for v in self._graph.neighbors(u) if v in self._u1)
            out[u] = KeyBroadcast(**self._common(), receiver=u, peers=peers)
        return out

    def _close_shares(self) -> dict[int, Message]:
        self._u2 = frozenset(self._boxes)
        self._need(len(self._u2), "clients shared keys")
        inbox: dict[int, list[tuple[int, bytes]]] = {v: [] for v in self._u2}
        for sender in sorted(self._u2):
            for receiver, box in self._boxes[sender].items():
                if receiver in inbox:
                    inbox[receiver].append((sender, box))
        self._boxes.clear()
        return {
            v: ShareBroadcast(**self._common(), receiver=v, boxes=tuple(boxes))
            for v, boxes in sorted(inbox.items())
        }

    def _close_masked(self) -> dict[int, Message]:
        self._u3 = tuple(sorted(self._arrived))
        self._need(len(self._u3), "masked inputs arrived")
        survivors = self._survivor_set = frozenset(self._u3)
        self._dropped = tuple(
            v
            for v in sorted(self._u2 - survivors)
            if survivors.intersection(self._graph.neighbors(v))
        )
        self._dropped_set = frozenset(self._dropped)
        self._check_recoverable(self._u3, "after masked input")
        return {
            u: ConsistencyRequest(**self._common(), receiver=u, survivors=self._u3)
            for u in self._u3
        }

    def _close_consistency(self) -> dict[int, Message]:
        self._u4 = frozenset(self._signatures)
        self._need(len(self._u4), "clients passed the consistency check")
        self._check_recoverable(self._u4, "after consistency check")
        auth = self.config.authenticated
        out: dict[int, Message] = {}
        for u in sorted(self._u4):
            sigs: tuple[tuple[int, bytes], ...] = ()
            if auth:
                sigs = tuple(
                    (w, self._signatures[w]) for w in self._graph.holders(u) if w in self._u4
                )
            out[u] = UnmaskRequest(
                **self._common(),
                receiver=u,
                survivors=self._u3,
                dropped=self._dropped,
                signatures=sigs,
            )
        return out

    def _close_unmask(self) -> dict[int, Message]:
        cfg = self.config
        t = cfg.threshold
        for owner in self._u3:
            have = len(self._seed_shares.get(owner, {}))
            if have < t:
                raise ThresholdError(f"{have} seed shares of survivor {owner} arrived, need {t}")
        for owner in self._dropped:
            have = len(self._key_shares.get(owner, {}))
            if have < t:
                raise ThresholdError(f"{have} key shares of dropped client {owner}, need {t}")
        seeds = shamir.reconstruct_many(
            [self._seed_shares[u] for u in self._u3], t, cfg.seed_bytes
        )
        keys = shamir.reconstruct_many([self._key_shares[v] for v in self._dropped], t, 32)
        self._seed_shares.clear()
        self._key_shares.clear()
        items: list[tuple[bytes, int]] = [(seed, -1) for seed in seeds]
        survivors = frozenset(self._u3)
        for v, private in zip(self._dropped, keys, strict=True):
            pair = KeyPair.from_private(private)
            if pair.public != self._adverts[v].mask_public:
                raise RemoteProtocolError(
                    f"the key shares of dropped client {v} rebuild a key that does not match "
                    "its advertisement (a client sent bad shares)"
                )
            for u in self._graph.neighbors(v):
                if u not in survivors:
                    continue
                seed = derive_key(
                    agree(pair, self._adverts[u].mask_public),
                    "pairwise-mask",
                    cfg.session_id,
                    cfg.round_index,
                    u,
                    v,
                    cfg.seed_bytes,
                )
                items.append((seed, -pairwise_sign(u, v)))
        assert self._sum is not None
        for start in range(0, len(items), _SEED_BATCH):
            self._expander.accumulate_many(self._sum, items[start : start + _SEED_BATCH])
        self.result = reduce_words(self._sum, cfg.bits)
        self._sum = None
        return {}
