"""How this library's protocol messages ride inside Flower messages.

Every Flower message of a secure-aggregation round carries, in its ``RecordDict``:

===================  ============  ====================================================
record               kind          contents
===================  ============  ====================================================
``secagg_rec``       ConfigRecord  ``version`` (int, 1), ``stage`` (str, one of
                                   :data:`~secagg_rec.secagg.driver.STAGES`); on the
                                   server's ``advertise`` message also the round setup
                                   (:mod:`secagg_rec.flower.setup`)
``secagg_rec.frame`` ArrayRecord   ``frame``: one Array whose ``data`` is the codec
                                   frame (``protocols/secagg.md`` §5); absent on the
                                   setup message
===================  ============  ====================================================

The frame travels as the raw bytes of an ``Array`` (``dtype="uint8"``,
``stype="secagg_rec/frame-v1"``) rather than a ConfigRecord value, because Flower
splits large Arrays into chunks (a masked input is ``dim`` words); it is never read
with ``numpy.load``. The stage name is redundant with the frame's own type (the
codec checks that) and only routes the message.

Replies carry the same two records and nothing else: no metrics, no example count.
"""

from __future__ import annotations

from dataclasses import dataclass

from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from secagg_rec.errors import RemoteProtocolError
from secagg_rec.secagg.driver import STAGES

__all__ = [
    "FRAME_RECORD",
    "FRAME_STYPE",
    "RECORD",
    "SECAGG_ERROR_CODE",
    "WIRE_VERSION",
    "Envelope",
    "is_secagg",
    "pack",
    "strip",
    "unpack",
]

RECORD = "secagg_rec"
FRAME_RECORD = "secagg_rec.frame"
FRAME_STYPE = "secagg_rec/frame-v1"
WIRE_VERSION = 1
#: ``flwr.app.Error.code`` of a client's refusal (the reason says why).
SECAGG_ERROR_CODE = 7401


@dataclass(frozen=True)
class Envelope:
    """One unpacked message: the stage, the codec frame (if any) and the control record."""

    stage: str
    frame: bytes | None
    record: ConfigRecord


def is_secagg(content: RecordDict) -> bool:
    """True if ``content`` holds a secure-aggregation record."""
    return RECORD in content


def pack(stage: str, frame: bytes | None = None, extra: ConfigRecord | None = None) -> RecordDict:
    """A ``RecordDict`` with the control record (``extra`` merged in) and the frame.

    Raises:
        ValueError: unknown stage.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    record = ConfigRecord({"version": WIRE_VERSION, "stage": stage})
    if extra is not None:
        for key, value in extra.items():
            if key in ("version", "stage"):
                raise ValueError(f"extra field {key!r} is reserved")
            record[key] = value
    content = RecordDict({RECORD: record})
    if frame is not None:
        array = Array(dtype="uint8", shape=(len(frame),), stype=FRAME_STYPE, data=bytes(frame))
        content[FRAME_RECORD] = ArrayRecord({"frame": array})
    return content


def unpack(content: RecordDict) -> Envelope:
    """Read the control record and frame back.

    Raises:
        RemoteProtocolError: the record is missing, of another wire version, names an
            unknown stage, or the frame record is malformed.
    """
    record = content.get(RECORD)
    if not isinstance(record, ConfigRecord):
        raise RemoteProtocolError(f"message has no {RECORD!r} ConfigRecord")
    version = record.get("version")
    if version != WIRE_VERSION:
        raise RemoteProtocolError(
            f"wire version {version!r} is not supported (this side speaks {WIRE_VERSION})"
        )
    stage = record.get("stage")
    if stage not in STAGES:
        raise RemoteProtocolError(f"unknown stage {stage!r}")
    frame: bytes | None = None
    if FRAME_RECORD in content:
        arrays = content[FRAME_RECORD]
        if not isinstance(arrays, ArrayRecord) or list(arrays.keys()) != ["frame"]:
            raise RemoteProtocolError(f"{FRAME_RECORD!r} must be an ArrayRecord with one 'frame'")
        array = arrays["frame"]
        if array.stype != FRAME_STYPE or array.dtype != "uint8":
            raise RemoteProtocolError(
                f"frame array has stype {array.stype!r}, dtype {array.dtype!r}"
            )
        frame = bytes(array.data)
        if tuple(array.shape) != (len(frame),):
            raise RemoteProtocolError("frame array shape does not match its length")
    return Envelope(stage=str(stage), frame=frame, record=record)


def strip(content: RecordDict) -> RecordDict:
    """``content`` without this module's records (what the user's own function sees)."""
    return RecordDict({k: v for k, v in content.items() if k not in (RECORD, FRAME_RECORD)})
