"""A client's session across Flower messages, kept in ``Context.state`` by replay.

Flower runs a ClientApp once per message (a fresh process per message on a SuperNode,
any Ray actor in simulation); only ``Context.state`` (a ``RecordDict``) survives from one
message to the next. :class:`~secagg_rec.secagg.ClientSession` keeps its secrets in
memory and has no serialized form, so this module stores what is needed to *rebuild*
it instead:

- a 32-byte key from the OS CSPRNG that keys an AES-256-CTR stream
  (:class:`StreamRandom`), the only randomness the session draws from: key pairs,
  self-mask seed, Shamir coefficients and AEAD nonces all come from it, in order;
- the round setup, and every server frame the session has accepted, in order;
- the encoded input, only until the masked input is sent.

On each message the session is rebuilt by calling ``start()`` and feeding it the
logged frames (the sessions are sans-I/O and deterministic given their randomness), then
the new frame is handled. Replay re-derives exactly the same secrets and the same
replies; the masked stage is replayed with a zero input, since nothing after it
depends on the input. When the session ends (done, failed or aborted) the key, log and
input are wiped and the next message of that session is refused, so the client never
answers a second unmask request. Caveat: Flower stores the updated ``Context`` after
the reply has been handed over; a ClientApp killed between the two would come back
with the state of before that message (replaying would then rebuild the same
secrets, but a second, different unmask request could be answered). Run SuperNodes
where they are not killed at will by the server's operator.

Cost: the rebuild repeats earlier stages' work, so a round does about three times the
mask expansion of a single pass (stages 3, 4 and 5 each expand the masks of stage 3).
A serializable session in the protocol core would remove this.

What is stored is as secret as the session itself (with the key, anyone can rebuild
every secret of the round). It stays on the client's side: in deployment, inside the
SuperNode (and on the SuperNode <-> ClientApp runtime API on loopback); in simulation,
in the simulation process. It never goes to the SuperLink.
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from secagg_rec.errors import LocalProtocolError, RemoteProtocolError
from secagg_rec.flower.settings import ClientPolicy
from secagg_rec.flower.setup import RoundSetup, setup_from_record
from secagg_rec.secagg import codec
from secagg_rec.secagg.client import ClientSession
from secagg_rec.secagg.transitions import ClientState

__all__ = ["HISTORY_RECORD", "INPUT_RECORD", "SESSION_RECORD", "SessionStore", "StreamRandom"]

SESSION_RECORD = "secagg_rec.session"
SETUP_RECORD = "secagg_rec.session-setup"
INPUT_RECORD = "secagg_rec.input"
HISTORY_RECORD = "secagg_rec.history"
_KEY_BYTES = 32


class StreamRandom:
    """Random bytes from AES-256-CTR keyed by a secret 32-byte key (counter from 0).

    With a key from ``os.urandom(32)`` this is a CSPRNG (a CTR-DRBG without reseeding);
    two instances with the same key return the same bytes in the same order, which is
    what lets a session be rebuilt.

    Raises:
        ValueError: a key that is not 32 bytes.
    """

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != _KEY_BYTES:
            raise ValueError("StreamRandom needs a 32-byte key")
        self._enc = Cipher(algorithms.AES(bytes(key)), modes.CTR(b"\x00" * 16)).encryptor()

    def token_bytes(self, n: int) -> bytes:
        """The next ``n`` bytes of the stream. Raises ValueError if ``n < 0``."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return self._enc.update(b"\x00" * n)


class SessionStore:
    """This node's secure-aggregation session inside ``Context.state``.

    Args:
        state: ``context.state`` of the ClientApp (modified in place).
    """

    def __init__(self, state: RecordDict) -> None:
        self._state = state

    # -- history ------------------------------------------------------------------------

    @property
    def last_round(self) -> int | None:
        """Highest round index this node has started, or ``None``."""
        history = self._state.get(HISTORY_RECORD)
        if isinstance(history, ConfigRecord) and isinstance(history.get("last-round"), int):
            return int(history["last-round"])
        return None

    @property
    def active(self) -> bool:
        """True while a session is stored (started, not yet ended)."""
        return SESSION_RECORD in self._state

    # -- lifecycle ----------------------------------------------------------------------

    def begin(self, setup_record: ConfigRecord, setup: RoundSetup, words: np.ndarray) -> bytes:
        """Start a new session for ``setup`` with input ``words``; return its advert frame.

        Any previous session is wiped first. ``setup_record`` is stored as received so
        that later messages rebuild the same config.
        """
        self.wipe()
        key = os.urandom(_KEY_BYTES)
        session = ClientSession(setup.config, setup.client_id, rng=StreamRandom(key))
        session.set_input(words)  # validates length and range before anything is stored
        advert = codec.encode(session.start())
        self._state[SETUP_RECORD] = ConfigRecord(dict(setup_record.items()))
        self._state[SESSION_RECORD] = ConfigRecord({"key": key, "log": []})
        self._state[INPUT_RECORD] = ArrayRecord({"words": Array(np.ascontiguousarray(words))})
        self._state[HISTORY_RECORD] = ConfigRecord({"last-round": setup.config.round_index})
        return advert

    def step(self, frame: bytes, policy: ClientPolicy) -> tuple[bytes, ClientSession]:
        """Rebuild the session, log ``frame``, handle it and return the reply frame.

        The session is wiped when it ends (DONE) or fails; the error propagates.

        Raises:
            RemoteProtocolError: no session is active (never started, already ended,
                or wiped after a failure), or the session refuses ``frame``.
            ThresholdError: too few peers remain (session aborted).
            LocalProtocolError: the stored state is inconsistent.
        """
        record = self._state.get(SESSION_RECORD)
        setup_record = self._state.get(SETUP_RECORD)
        if not isinstance(record, ConfigRecord) or not isinstance(setup_record, ConfigRecord):
            raise RemoteProtocolError("no secure-aggregation session is active on this node")
        try:
            setup = setup_from_record(setup_record, policy)
            session = self._replay(setup, record)
            log = list(record["log"])  # type: ignore[arg-type]
            log.append(bytes(frame))
            record["log"] = log  # logged before the reply exists
            if session.state is ClientState.SHARED:
                session.set_input(self._take_input())
            reply = session.receive_bytes(frame)
        except Exception:
            self.wipe()
            raise
        if session.state is ClientState.DONE:
            self.wipe()
        return reply, session

    def wipe(self) -> None:
        """Forget the current session's key, log, setup and input (history stays)."""
        for name in (SESSION_RECORD, SETUP_RECORD, INPUT_RECORD):
            if name in self._state:
                del self._state[name]

    # -- plumbing -----------------------------------------------------------------------

    def _replay(self, setup: RoundSetup, record: ConfigRecord) -> ClientSession:
        key = record.get("key")
        log = record.get("log")
        if not isinstance(key, bytes) or not isinstance(log, list):
            raise LocalProtocolError("stored session state is malformed")
        session = ClientSession(setup.config, setup.client_id, rng=StreamRandom(key))
        session.start()
        for logged in log:
            if session.state is ClientState.SHARED:
                # The masked stage is behind us; its output is discarded, so a zero
                # input rebuilds the same state without keeping the real one.
                session.set_input(np.zeros(setup.config.dim, dtype=np.uint64))
            session.receive_bytes(logged)
        return session

    def _take_input(self) -> np.ndarray:
        arrays = self._state.get(INPUT_RECORD)
        if not isinstance(arrays, ArrayRecord) or "words" not in arrays:
            raise LocalProtocolError("the encoded input is missing from the node state")
        words = arrays["words"].numpy()
        del self._state[INPUT_RECORD]
        return words
