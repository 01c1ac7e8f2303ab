"""The ClientApp side: a Flower mod (and a plain handler) that runs a client's round.

Two ways to plug it in:

- **Mod** around an ordinary Flower train function (the function stays as it is)::

      app = ClientApp()

      @app.train(mods=[make_secagg_mod()])
      def train(msg: Message, context: Context) -> Message:
          ...  # train, then reply {"arrays": ArrayRecord(update),
          ...  #                    "metrics": MetricRecord({"num-examples": n})}

  On the round's setup message the mod calls the function with the message minus this
  library's records, flattens every ArrayRecord of the reply into the vector to
  aggregate (:func:`update_from_reply`), takes the weight from the ``num-examples``
  metric, and replies with the masked protocol message only. The function's reply
  itself never leaves the node. The later four stages never reach the function.

- **Handler** when you would rather return a vector than a Flower reply::

      app.train()(make_secagg_handler(lambda msg, ctx: (vector, num_examples)))

What travels: the setup message in, then one codec frame per stage each way
(:mod:`secagg_rec.flower.wire`). The weight is the last word of the encoded vector
(``Quantizer(weighted=True)``), masked like the rest; no count, metric or loss is sent
in clear. A client refuses (error reply, session wiped) a round weaker than its
:class:`~secagg_rec.flower.settings.ClientPolicy`, a setup that does not fit its update,
a replayed round, and anything the protocol session refuses. Refusal reasons name the
protocol problem, never values of the update or weight.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
from flwr.app import ArrayRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable, Mod

from secagg_rec.errors import RemoteProtocolError, SecAggError
from secagg_rec.flower.arrays import flatten
from secagg_rec.flower.client_state import SessionStore
from secagg_rec.flower.settings import ClientPolicy
from secagg_rec.flower.setup import RoundSetup, setup_from_record
from secagg_rec.flower.wire import SECAGG_ERROR_CODE, is_secagg, pack, strip, unpack

__all__ = [
    "UpdateFn",
    "handle_secagg_message",
    "make_secagg_handler",
    "make_secagg_mod",
    "update_from_reply",
]

logger = logging.getLogger("secagg_rec.flower")

#: ``(message without secagg records, context) -> (update vector, weight or None)``.
UpdateFn = Callable[[Message, Context], tuple[np.ndarray, float | None]]


class UpdateError(ValueError):
    """The update cannot be encoded (its reason is kept on the client)."""


class _UpdateFnFailed(Exception):
    """Carries an exception of the caller's update function past our handlers."""


def update_from_reply(
    content: RecordDict, weight_key: str = "num-examples"
) -> tuple[np.ndarray, float | None]:
    """The vector and weight in a train function's reply content.

    Every ArrayRecord (in record order, keys in order) is flattened into one float64
    vector; the weight is the ``weight_key`` entry of the first MetricRecord that has
    it, or ``None``.

    Raises:
        ValueError: no ArrayRecord, or a non-numeric array.
    """
    records = [r for r in content.values() if isinstance(r, ArrayRecord)]
    if not records:
        raise ValueError("the train reply holds no ArrayRecord to aggregate")
    vector = np.concatenate([flatten(r) for r in records])
    weight: float | None = None
    for record in content.values():
        if isinstance(record, MetricRecord) and weight_key in record:
            value = record[weight_key]
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"metric {weight_key!r} is not a number")
            weight = float(value)
            break
    return vector, weight


def _encode(setup: RoundSetup, vector: np.ndarray, weight: float | None) -> np.ndarray:
    quant = setup.quantizer
    flat = np.asarray(vector).reshape(-1)
    if flat.size != setup.value_dim:
        raise RemoteProtocolError(
            f"the server's round expects {setup.value_dim} values per update; this "
            f"client's update has {flat.size}"
        )
    if flat.dtype.kind not in "biuf" or not np.all(np.isfinite(flat)):
        raise UpdateError("the update is not a finite numeric vector")
    if quant.weighted:
        if weight is None:
            raise UpdateError("the round is weighted but the update came without a weight")
        if not (math.isfinite(weight) and 0 <= weight <= quant.weight_max):
            raise UpdateError("the update's weight is outside the round's [0, weight_max]")
        return quant.encode(flat, np.random.default_rng(), weight=weight)
    return quant.encode(flat, np.random.default_rng())


def _refuse(msg: Message, reason: str) -> Message:
    return Message(Error(code=SECAGG_ERROR_CODE, reason=reason), reply_to=msg)


def handle_secagg_message(
    msg: Message,
    context: Context,
    update_fn: UpdateFn | Callable[[Message, Context], Message],
    *,
    policy: ClientPolicy | None = None,
    reply_mode: bool = False,
    weight_key: str = "num-examples",
) -> Message:
    """Handle one secure-aggregation message for this node and return the reply.

    Args:
        msg: a message whose content has the ``secagg_rec`` record.
        context: the ClientApp context; its ``state`` holds the session between
            messages (:mod:`secagg_rec.flower.client_state`).
        update_fn: called once per round, on the setup message, with the message
            minus this library's records. Returns ``(vector, weight)``, or (with
            ``reply_mode``) a Flower reply read by :func:`update_from_reply`.
        policy: the weakest round accepted (default :class:`ClientPolicy()`).
        reply_mode: ``update_fn`` returns a Flower ``Message`` (the mod's case).
        weight_key: the metric holding the weight in ``reply_mode``.

    Returns:
        The reply: the protocol frame of this stage, or an error reply (code
        :data:`~secagg_rec.flower.wire.SECAGG_ERROR_CODE`) when the client refuses.
        Refusing a stage message wipes the session; refusing a new round's setup
        leaves the current session alone. An error reply of ``update_fn`` is passed on.

    Raises:
        Whatever ``update_fn`` raises (the session is wiped first).
    """
    policy = policy or ClientPolicy()
    store = SessionStore(context.state)
    owns_state = False  # a refused setup leaves any current session alone
    try:
        envelope = unpack(msg.content)
        if envelope.stage == "advertise":
            setup = setup_from_record(envelope.record, policy, last_round=store.last_round)
            owns_state = True
            store.wipe()
            user_msg = msg
            msg_content = msg.content
            user_msg.content = strip(msg_content)
            try:
                produced = update_fn(user_msg, context)
            except Exception as exc:  # the caller's own error: passed on unchanged
                raise _UpdateFnFailed from exc
            finally:
                user_msg.content = msg_content
            if reply_mode:
                if not isinstance(produced, Message):
                    raise TypeError("the wrapped train function must return a Message")
                if produced.has_error():
                    return Message(produced.error, reply_to=msg)
                vector, weight = update_from_reply(produced.content, weight_key)
            else:
                if isinstance(produced, Message):
                    raise TypeError("update_fn must return (vector, weight), not a Message")
                vector, weight = produced
            words = _encode(setup, vector, weight)
            frame = store.begin(envelope.record, setup, words)
            logger.info(
                "secagg round %d: client %d of %d advertised keys",
                setup.config.round_index,
                setup.client_id,
                setup.config.n,
            )
        else:
            owns_state = True
            if envelope.frame is None:
                raise RemoteProtocolError(f"stage {envelope.stage!r} message carries no frame")
            frame, session = store.step(envelope.frame, policy)
            logger.info(
                "secagg stage %s: client %d -> %s",
                envelope.stage,
                session.client_id,
                session.state.value,
            )
        return Message(pack(envelope.stage, frame), reply_to=msg)
    except _UpdateFnFailed as failed:
        assert failed.__cause__ is not None
        raise failed.__cause__  # noqa: B904 - re-raise the caller's exception as is
    except UpdateError as exc:
        store.wipe()
        logger.warning("secagg: refusing to send this update: %s", exc)
        return _refuse(msg, "the client could not encode its update (details kept locally)")
    except (SecAggError, ValueError) as exc:
        if owns_state:
            store.wipe()
        logger.warning("secagg: refusing: %s: %s", type(exc).__name__, exc)
        return _refuse(msg, f"{type(exc).__name__}: {exc}")


def make_secagg_handler(
    update_fn: UpdateFn, *, policy: ClientPolicy | None = None
) -> ClientAppCallable:
    """A ClientApp train function that runs the round with ``update_fn``'s vector.

    ``update_fn(message, context) -> (vector, weight)`` is called on the setup message
    (the message minus this library's records; e.g. the global model travels in its
    content). ``weight`` may be ``None`` for unweighted rounds. Messages without the
    ``secagg_rec`` record are refused.
    """

    def train(msg: Message, context: Context) -> Message:
        if not is_secagg(msg.content):
            return _refuse(msg, "this ClientApp only answers secure-aggregation messages")
        return handle_secagg_message(msg, context, update_fn, policy=policy)

    return train


def make_secagg_mod(*, policy: ClientPolicy | None = None, weight_key: str = "num-examples") -> Mod:
    """A ClientApp mod that runs the wrapped train function inside secure aggregation.

    Messages without the ``secagg_rec`` record pass through untouched (evaluation,
    other queries). See the module docstring for the flow.
    """

    def secagg_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if not msg.has_content() or not is_secagg(msg.content):
            return call_next(msg, context)
        return handle_secagg_message(
            msg, context, call_next, policy=policy, reply_mode=True, weight_key=weight_key
        )

    return secagg_mod
