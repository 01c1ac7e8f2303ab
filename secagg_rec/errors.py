"""The library's one exception tree.

Every error the library raises on purpose is a :class:`SecAggError` or one of the
standard :class:`TypeError` / :class:`ValueError` for bad arguments (raised before any
work is done). The split follows h11: *whose fault is it?*

``SecAggError``
    ``LocalProtocolError``   this side misused the API (wrong state, missing input).
    ``RemoteProtocolError``  the peer sent something invalid, out of order or replayed.
        ``DecodeError``      bytes that are not a valid message (truncated, oversized,
                             trailing bytes, bad field).
        ``DecryptionError``  an authenticated ciphertext failed to open (tampered,
                             wrong key, bound to another session / sender / receiver).
    ``ThresholdError``       too few clients left to finish the round: clean abort,
                             nothing revealed.
    ``BudgetExceededError``  a privacy ledger refuses a round that would overspend.
    ``LedgerError``          a ledger file is corrupt, foreign or unreadable.
    ``DataFormatError``      an input data file is malformed (names file and line).
"""

from __future__ import annotations

__all__ = [
    "BudgetExceededError",
    "DataFormatError",
    "DecodeError",
    "DecryptionError",
    "LedgerError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "SecAggError",
    "ThresholdError",
    "TrainingDivergedError",
]


class SecAggError(Exception):
    """Base class of every error the library raises on purpose."""


class LocalProtocolError(SecAggError):
    """This side misused the API: a call in the wrong state or with missing input."""


class RemoteProtocolError(SecAggError):
    """The peer sent something invalid, inconsistent, out of order or replayed."""


class DecodeError(RemoteProtocolError):
    """Bytes that do not decode to a valid message."""


class DecryptionError(RemoteProtocolError):
    """An authenticated ciphertext failed to decrypt (tampered or mis-bound)."""


class ThresholdError(SecAggError):
    """Fewer than the threshold of clients remain; the round aborts, nothing revealed."""


class BudgetExceededError(SecAggError):
    """A planned round would take a client's privacy spend past its budget."""


class TrainingDivergedError(SecAggError, ValueError):
    """Local training produced a NaN or infinite update (learning rate too high).

    Attributes:
        round: the 1-based federated round.
        client: the client whose update was not finite.
    """

    def __init__(self, message: str, *, round: int, client: int):
        super().__init__(message)
        self.round = round
        self.client = client


class LedgerError(SecAggError):
    """A privacy ledger file is corrupt, foreign or cannot be used."""


class DataFormatError(SecAggError, ValueError):
    """A data file is malformed.

    Attributes:
        path: the file, as given.
        line: 1-based line number, or ``None`` when the problem is not one line.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line
