"""The client side of a round: a sans-I/O state machine.

A :class:`ClientSession` takes messages and returns the message to send; it never
touches sockets, threads, clocks or a global RNG (randomness comes from the injected
:class:`~secagg_rec.crypto.random.RandomSource`, the OS CSPRNG by default). Typical
use, with any transport::

    client = ClientSession(config, client_id)
    client.set_input(words)                 # uint words of Z_{2^bits}, len == dim
    send(client.start())                    # AdvertiseKeys
    send(client.receive(key_broadcast))     # ShareKeys
    send(client.receive(share_broadcast))   # MaskedInput
    send(client.receive(consistency_req))   # ConsistencyResponse
    send(client.receive(unmask_req))        # UnmaskResponse; state DONE

What an honest client checks (each refusal raises and leaves the session FAILED, or
ABORTED for too few peers): messages from another session or round; entries for
clients not in the round, not neighbours, listed twice, or sharing a public key; in
authenticated mode, advertisements whose signature does not verify (a substituted
key) and unmask requests without ``t`` valid consistency signatures; share boxes that
fail authentication or name the wrong sender/receiver; survivor lists that contradict
what it saw before; and an unmask request naming a client as both survivor and
dropped. It answers at most one unmask request, so it never reveals both shares of
the same peer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from secagg_rec.crypto import aead, shamir
from secagg_rec.crypto.kdf import derive_key
from secagg_rec.crypto.keys import KeyPair, SigningKey, agree, verify_signature
from secagg_rec.crypto.prg import MaskExpander, reduce_words, word_dtype
from secagg_rec.crypto.random import RandomSource, default_random
from secagg_rec.errors import (
    LocalProtocolError,
    RemoteProtocolError,
    SecAggError,
    ThresholdError,
)
from secagg_rec.secagg import codec
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
from secagg_rec.secagg.transitions import ClientState, Role, next_state

__all__ = ["ClientSession", "pairwise_sign"]


def pairwise_sign(me: int, peer: int) -> int:
    """+1 if ``me`` adds the pair's mask (``me < peer``), -1 if it subtracts it."""
    return 1 if me < peer else -1


class ClientSession:
    """One client's side of one round.

    Args:
        config: the round configuration (same object or equal fields as the server's).
        client_id: this client's id; must be in ``config.client_ids``.
        rng: source of every secret (default: OS CSPRNG). Tests may inject
            :class:`~secagg_rec.crypto.random.DeterministicRandom`.
        signing_key: this client's Ed25519 key; required in authenticated mode and
            must match ``config.verify_keys[client_id]``.

    Raises:
        ValueError: unknown ``client_id``, missing or mismatched signing key.
    """

    def __init__(
        self,
        config: SecAggConfig,
        client_id: int,
        *,
        rng: RandomSource | None = None,
        signing_key: SigningKey | None = None,
    ) -> None:
        if client_id not in config.id_set:
            raise ValueError(f"client {client_id} is not in this round's client_ids")
        if config.authenticated:
            if signing_key is None:
                raise ValueError("authenticated mode needs the client's signing_key")
            if signing_key.public != config.verify_keys[client_id]:
                raise ValueError("signing_key does not match config.verify_keys for this client")
        self.config = config
        self.client_id = client_id
        self._rng = rng or default_random()
        self._signer = signing_key
        self._state = ClientState.IDLE
        self._failure: str | None = None
        self._input: np.ndarray | None = None
        self._neighbors = frozenset(config.graph.neighbors(client_id))
        self._holders = self._neighbors | {client_id}
        # Per-round secrets and views, filled in as the round goes.
        self._enc: KeyPair | None = None
        self._mask: KeyPair | None = None
        self._peers: dict[int, AdvertiseKeys] = {}
        self._channel_keys: dict[int, bytes] = {}
        self._seed_shares: dict[int, bytes] = {}
        self._key_shares: dict[int, bytes] = {}
        self._senders: frozenset[int] = frozenset()
        self._survivors: tuple[int, ...] | None = None

    # -- public API ---------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        """The current state (see :mod:`secagg_rec.secagg.transitions`)."""
        return self._state

    @property
    def failure(self) -> str | None:
        """Why the session failed or aborted, if it did."""
        return self._failure

    def set_input(self, words: np.ndarray) -> None:
        """Provide the vector to aggregate: ``dim`` integers in ``[0, 2**bits)``.

        May be called any time before the share broadcast arrives.

        Raises:
            LocalProtocolError: the masked input was already sent or the session ended.
            ValueError: wrong shape, non-integer dtype, or a word out of range.
        """
        if self._state not in (ClientState.IDLE, ClientState.ADVERTISED, ClientState.SHARED):
            raise LocalProtocolError(f"cannot set the input in state {self._state.value}")
        arr = np.asarray(words)
        if arr.ndim != 1 or arr.shape[0] != self.config.dim:
            raise ValueError(f"input must be a 1-D vector of {self.config.dim} words")
        if arr.dtype.kind not in "ui":
            raise ValueError(f"input must be integer words, got dtype {arr.dtype}")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >> self.config.bits):
            raise ValueError(f"input words must lie in [0, 2**{self.config.bits})")
        self._input = arr.astype(word_dtype(self.config.bits), copy=True)

    def start(self) -> AdvertiseKeys:
        """Generate this round's key pairs and return the advertisement to send.

        Raises:
            LocalProtocolError: called twice, or after failure.
        """
        return self._run("start", self._on_start)

    def receive(self, message: Message) -> Message:
        """Handle a message from the server and return the reply to send.

        Raises:
            RemoteProtocolError: (or DecryptionError) the server sent something invalid,
                out of order or replayed; the session is now FAILED.
            ThresholdError: too few peers remain; the session is now ABORTED.
            LocalProtocolError: the session already ended, or the input is missing when
                the masked input is due (state unchanged then: set it and resend).
        """
        handlers: dict[type, Callable[[Any], Message]] = {
            KeyBroadcast: self._on_key_broadcast,
            ShareBroadcast: self._on_share_broadcast,
            ConsistencyRequest: self._on_consistency_request,
            UnmaskRequest: self._on_unmask_request,
        }
        kind = type(message)
        if kind is ShareBroadcast and self._state is ClientState.SHARED and self._input is None:
            raise LocalProtocolError("set_input() must be called before the masked input is due")
        handler = handlers.get(kind)
        if handler is None:
            return self._run(kind, lambda: self._illegal(message))
        return self._run(kind, lambda: handler(message))

    def receive_bytes(self, data: bytes) -> bytes:
        """Decode ``data``, handle it as :meth:`receive` does, and encode the reply.

        Undecodable bytes raise :class:`~secagg_rec.errors.DecodeError` and fail the
        session.
        """
        self._check_alive()
        try:
            message = codec.decode(data)
        except SecAggError as exc:
            self._fail(ClientState.FAILED, str(exc))
            raise
        return codec.encode(self.receive(message))

    # -- plumbing -----------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self._state in (ClientState.FAILED, ClientState.ABORTED):
            raise LocalProtocolError(f"session is {self._state.value}: {self._failure}")

    def _fail(self, state: ClientState, reason: str) -> None:
        self._state = state
        self._failure = reason
        self._wipe()

    def _wipe(self) -> None:
        self._input = None
        self._seed_shares.clear()
        self._key_shares.clear()
        self._channel_keys.clear()

    def _run(self, event: type | str, handler: Callable[[], Any]) -> Any:
        self._check_alive()
        new_state = next_state(Role.CLIENT, self._state, event)
        if new_state is None:
            name = event if isinstance(event, str) else event.__name__
            if isinstance(event, str):
                raise LocalProtocolError(f"cannot {name} in state {self._state.value}")
            self._fail(ClientState.FAILED, f"unexpected {name} in state {self._state.value}")
            raise RemoteProtocolError(self._failure)
        try:
            out = handler()
        except ThresholdError as exc:
            self._fail(ClientState.ABORTED, str(exc))
            raise
        except SecAggError as exc:
            self._fail(ClientState.FAILED, str(exc))
            raise
        self._state = new_state  # type: ignore[assignment]
        if new_state is ClientState.DONE:
            self._wipe()
        return out

    def _illegal(self, message: Message) -> Message:
        raise RemoteProtocolError(f"unexpected {type(message).__name__}")

    def _check_context(self, message: Message, receiver: int) -> None:
        cfg = self.config
        if message.session_id != cfg.session_id or message.round_index != cfg.round_index:
            raise RemoteProtocolError(
                f"{type(message).__name__} belongs to another session or round (replayed?)"
            )
        if receiver != self.client_id:
            raise RemoteProtocolError(f"{type(message).__name__} is addressed to client {receiver}")

    def _check_known(self, ids: Any, what: str) -> None:
        ids = ids if isinstance(ids, (set, frozenset)) else set(ids)
        if not ids <= self.config.id_set:
            unknown = min(ids - self.config.id_set)
            raise RemoteProtocolError(f"{what} names client {unknown}, never in this round")

    # -- handlers -----------------------------------------------------------------------

    def _on_start(self) -> AdvertiseKeys:
        cfg = self.config
        self._enc = KeyPair.generate(self._rng)
        self._mask = KeyPair.generate(self._rng)
        msg = AdvertiseKeys(
            session_id=cfg.session_id,
            round_index=cfg.round_index,
            sender=self.client_id,
            enc_public=self._enc.public,
            mask_public=self._mask.public,
        )
        if cfg.authenticated:
            assert self._signer is not None
            sig = self._signer.sign(advertise_signing_payload(msg))
            msg = AdvertiseKeys(
                session_id=cfg.session_id,
                round_index=cfg.round_index,
                sender=self.client_id,
                enc_public=self._enc.public,
                mask_public=self._mask.public,
                signature=sig,
            )
        self._own_advert = msg
        return msg

    def _on_key_broadcast(self, msg: KeyBroadcast) -> ShareKeys:
        cfg = self.config
        self._check_context(msg, msg.receiver)
        assert self._enc is not None and self._mask is not None
        peers: dict[int, AdvertiseKeys] = {}
        seen_keys = {self._enc.public, self._mask.public}
        self._check_known((p.sender for p in msg.peers), "key broadcast")
        for p in msg.peers:
            if p.sender == self.client_id:
                if (p.enc_public, p.mask_public) != (self._enc.public, self._mask.public):
                    raise RemoteProtocolError("key broadcast substitutes this client's own keys")
                continue
            if p.sender not in self._neighbors:
                raise RemoteProtocolError(f"key broadcast lists client {p.sender}, not a neighbour")
            if cfg.authenticated and not verify_signature(
                cfg.verify_keys[p.sender], p.signature, advertise_signing_payload(p)
            ):
                raise RemoteProtocolError(
                    f"client {p.sender}'s key advertisement does not verify (substituted key?)"
                )
            for key in (p.enc_public, p.mask_public):
                if key in seen_keys:
                    raise RemoteProtocolError(
                        f"client {p.sender} advertises a public key already in use"
                    )
                seen_keys.add(key)
            peers[p.sender] = p
        holders = sorted({*peers, self.client_id})
        if len(holders) < cfg.threshold:
            raise ThresholdError(
                f"only {len(holders)} live holders for client {self.client_id}'s shares, "
                f"threshold is {cfg.threshold}"
            )
        self._peers = peers
        seed = self._rng.token_bytes(cfg.seed_bytes)
        xs = [cfg.x_of[h] for h in holders]
        seed_shares = shamir.split([seed], xs, cfg.threshold, self._rng)[0]
        key_shares = shamir.split([self._mask.private], xs, cfg.threshold, self._rng)[0]
        self._self_seed = seed
        boxes = []
        for j, holder in enumerate(holders):
            if holder == self.client_id:
                self._seed_shares[holder] = seed_shares[j]
                self._key_shares[holder] = key_shares[j]
                continue
            channel = derive_key(
                agree(self._enc, peers[holder].enc_public),
                "share-encryption",
                cfg.session_id,
                cfg.round_index,
                self.client_id,
                holder,
                32,
            )
            self._channel_keys[holder] = channel
            plaintext = (
                self.client_id.to_bytes(4, "big")
                + holder.to_bytes(4, "big")
                + seed_shares[j]
                + key_shares[j]
            )
            ad = aead.associated_data(cfg.session_id, cfg.round_index, self.client_id, holder)
            boxes.append((holder, aead.seal(channel, plaintext, ad, self._rng)))
        return ShareKeys(
            session_id=cfg.session_id,
            round_index=cfg.round_index,
            sender=self.client_id,
            boxes=tuple(boxes),
        )

    def _on_share_broadcast(self, msg: ShareBroadcast) -> MaskedInput:
        cfg = self.config
        self._check_context(msg, msg.receiver)
        assert self._mask is not None and self._input is not None
        self._check_known((s for s, _ in msg.boxes), "share broadcast")
        seed_len = shamir.share_size(cfg.seed_bytes)
        key_len = shamir.share_size(32)
        senders = []
        for sender, box in msg.boxes:
            if sender not in self._peers:
                raise RemoteProtocolError(
                    f"share box from client {sender}, whose keys this client never received"
                )
            ad = aead.associated_data(cfg.session_id, cfg.round_index, sender, self.client_id)
            plain = aead.open_box(self._channel_keys[sender], box, ad)
            if len(plain) != 8 + seed_len + key_len:
                raise RemoteProtocolError(f"share box from client {sender} has the wrong size")
            if plain[:4] != sender.to_bytes(4, "big") or plain[4:8] != self.client_id.to_bytes(
                4, "big"
            ):
                raise RemoteProtocolError(f"share box from client {sender} names other parties")
            self._seed_shares[sender] = plain[8 : 8 + seed_len]
            self._key_shares[sender] = plain[8 + seed_len :]
            senders.append(sender)
        self._senders = frozenset(senders)
        if len(self._senders) + 1 < cfg.threshold:
            raise ThresholdError(
                f"only {len(self._senders) + 1} of client {self.client_id}'s holders shared "
                f"keys, threshold is {cfg.threshold}"
            )
        expander = MaskExpander(cfg.dim, cfg.bits)
        acc = self._input
        self._input = None
        items = [(self._self_seed, 1)]
        for peer in sorted(self._senders):
            seed = derive_key(
                agree(self._mask, self._peers[peer].mask_public),
                "pairwise-mask",
                cfg.session_id,
                cfg.round_index,
                self.client_id,
                peer,
                cfg.seed_bytes,
            )
            items.append((seed, pairwise_sign(self.client_id, peer)))
        expander.accumulate_many(acc, items)
        reduce_words(acc, cfg.bits)
        del self._self_seed
        return MaskedInput(
            session_id=cfg.session_id,
            round_index=cfg.round_index,
            sender=self.client_id,
            bits=cfg.bits,
            vector=acc,
        )

    def _on_consistency_request(self, msg: ConsistencyRequest) -> ConsistencyResponse:
        cfg = self.config
        self._check_context(msg, msg.receiver)
        survivors = frozenset(msg.survivors)
        self._check_known(survivors, "consistency request")
        if self.client_id not in survivors:
            raise RemoteProtocolError("consistency request does not list this client as survivor")
        local = (survivors & self._neighbors) - self._senders
        if local:
            raise RemoteProtocolError(
                f"consistency request lists client {min(local)} as survivor, but it never "
                "shared keys with this client (contradicts the earlier view)"
            )
        live = len(survivors & self._holders)
        if live < cfg.threshold:
            raise ThresholdError(
                f"only {live} of client {self.client_id}'s holders survived, "
                f"threshold is {cfg.threshold}"
            )
        self._survivors = msg.survivors
        signature = b""
        if cfg.authenticated:
            assert self._signer is not None
            signature = self._signer.sign(
                consistency_signing_payload(cfg.session_id, cfg.round_index, self._survivors)
            )
        return ConsistencyResponse(
            session_id=cfg.session_id,
            round_index=cfg.round_index,
            sender=self.client_id,
            signature=signature,
        )

    def _on_unmask_request(self, msg: UnmaskRequest) -> UnmaskResponse:
        cfg = self.config
        self._check_context(msg, msg.receiver)
        survivors = frozenset(msg.survivors)
        dropped = frozenset(msg.dropped)
        both = survivors & dropped
        if both:
            raise RemoteProtocolError(
                f"unmask request lists client {min(both)} as both survivor and dropped"
            )
        self._check_known(survivors | dropped, "unmask request")
        if msg.survivors != self._survivors:
            raise RemoteProtocolError(
                "unmask request's survivors differ from the consistency check's"
            )
        local_dropped = dropped & self._neighbors
        expected = self._senders - survivors
        if local_dropped != expected:
            odd = sorted(local_dropped ^ expected)
            raise RemoteProtocolError(
                f"unmask request's dropped list contradicts this client's view at client {odd[0]}"
            )
        if cfg.authenticated:
            payload = consistency_signing_payload(cfg.session_id, cfg.round_index, survivors)
            valid = 0
            for signer, sig in msg.signatures:
                if signer not in survivors or signer not in self._holders:
                    raise RemoteProtocolError(f"signature from client {signer}, not a live holder")
                if not verify_signature(cfg.verify_keys[signer], sig, payload):
                    raise RemoteProtocolError(
                        f"consistency signature of client {signer} is invalid"
                    )
                valid += 1
            if valid < cfg.threshold:
                raise RemoteProtocolError(
                    f"only {valid} consistency signatures, threshold is {cfg.threshold}"
                )
        owners_alive = survivors & (self._senders | {self.client_id})
        seed_shares = tuple((c, self._seed_shares[c]) for c in sorted(owners_alive))
        key_shares = tuple((c, self._key_shares[c]) for c in sorted(local_dropped))
        return UnmaskResponse(
            session_id=cfg.session_id,
            round_index=cfg.round_index,
            sender=self.client_id,
            seed_shares=seed_shares,
            key_shares=key_shares,
        )

