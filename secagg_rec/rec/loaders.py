"""Readers for the MovieLens rating files.

Three layouts, one result (:class:`~secagg_rec.rec.dataset.InteractionDataset`):

* ``"ml-100k"``: ``u.data`` of MovieLens 100K; tab-separated, no header.
* ``"dat"``: ``ratings.dat`` of MovieLens 1M / 10M; ``::``-separated, no header.
* ``"csv"``: ``ratings.csv`` of MovieLens latest / 20M / 25M; comma-separated, with the
  header line ``userId,movieId,rating,timestamp``.

Every line holds ``user, item, rating, timestamp``: user and item ids and the
timestamp (seconds since the epoch) are non-negative decimal integers, the rating is a
finite decimal number. Line endings may be ``\\n``, ``\\r\\n`` or ``\\r``; blank lines
are skipped; a UTF-8 byte-order mark before a CSV header is ignored.

A malformed line raises :class:`~secagg_rec.errors.DataFormatError` naming the file,
the 1-based line number and what was expected there. Files are parsed in blocks by
numpy's C reader; a block it rejects is re-read line by line to find and name the
first bad line, so the error is exact without slowing down good files.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from secagg_rec.errors import DataFormatError
from secagg_rec.rec.dataset import InteractionDataset

__all__ = [
    "FORMATS",
    "RATINGS_FILENAMES",
    "detect_format",
    "find_ratings_file",
    "load_ml100k",
    "load_ratings",
    "load_ratings_csv",
    "load_ratings_dat",
]

#: The known layouts, by name.
FORMATS: tuple[str, ...] = ("ml-100k", "dat", "csv")

#: File names looked for, in this order, when ``load_ratings`` gets a directory.
RATINGS_FILENAMES: tuple[tuple[str, str], ...] = (
    ("u.data", "ml-100k"),
    ("ratings.dat", "dat"),
    ("ratings.csv", "csv"),
)

_CSV_HEADER = "userId,movieId,rating,timestamp"
_FIELDS = ("user id", "item id", "rating", "timestamp")
_ROW_DTYPE = np.dtype(
    [("user", np.int64), ("item", np.int64), ("rating", np.float64), ("timestamp", np.int64)]
)
_BLOCK_BYTES = 32 * 1024 * 1024
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class _Layout:
    separator: bytes
    header: str | None
    describe: str


_LAYOUTS = {
    "ml-100k": _Layout(b"\t", None, "user_id<TAB>item_id<TAB>rating<TAB>timestamp"),
    "dat": _Layout(b"::", None, "UserID::MovieID::Rating::Timestamp"),
    "csv": _Layout(b",", _CSV_HEADER, "userId,movieId,rating,timestamp"),
}


def find_ratings_file(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """Resolve ``path`` (a dataset directory or a ratings file) to (file, format).

    A directory is searched for ``u.data``, ``ratings.dat`` and ``ratings.csv`` in that
    order. A file's format comes from its name (see :func:`detect_format`).

    Raises:
        TypeError: ``path`` is not a string or path.
        FileNotFoundError: nothing at ``path``, or a directory without a ratings file.
        ValueError: a file whose name does not say its format.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if p.is_dir():
        for name, fmt in RATINGS_FILENAMES:
            if (p / name).is_file():
                return p / name, fmt
        wanted = ", ".join(name for name, _ in RATINGS_FILENAMES)
        raise FileNotFoundError(f"{p}: no ratings file in this directory (looked for {wanted})")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file or directory")
    return p, detect_format(p)


def detect_format(path: str | os.PathLike[str]) -> str:
    """The layout of a ratings file from its name: ``*.data`` -> ``"ml-100k"``,
    ``*.dat`` -> ``"dat"``, ``*.csv`` -> ``"csv"``.

    Raises:
        ValueError: any other name.
    """
    suffix = Path(path).suffix.lower()
    fmt = {".data": "ml-100k", ".dat": "dat", ".csv": "csv"}.get(suffix)
    if fmt is None:
        raise ValueError(
            f"{path}: cannot tell the format from the file name; expected u.data "
            "(MovieLens 100K), ratings.dat (1M/10M) or ratings.csv (latest/20M/25M)"
        )
    return fmt


def load_ratings(path: str | os.PathLike[str], *, format: str | None = None) -> InteractionDataset:
    """Load a MovieLens ratings file, or the ratings file of a dataset directory.

    Args:
        path: a directory (``ml-100k/``, ``ml-1m/``, ``ml-latest-small/`` ...) or a
            ratings file.
        format: force a layout from :data:`FORMATS` instead of guessing from the name.

    Raises:
        TypeError, FileNotFoundError, ValueError: see :func:`find_ratings_file`;
            ValueError also for an unknown ``format``.
        DataFormatError: a malformed line (names file, line and what was expected), a
            wrong CSV header, or a file with no ratings.
    """
    if format is not None and format not in _LAYOUTS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if format is not None and isinstance(path, (str, os.PathLike)) and Path(path).is_file():
        return _load(Path(path), format)
    file, guessed = find_ratings_file(path)
    return _load(file, format or guessed)


def load_ml100k(path: str | os.PathLike[str]) -> InteractionDataset:
    """Load MovieLens 100K ``u.data`` (or its directory). See :func:`load_ratings`."""
    return load_ratings(_in_dir(path, "u.data"), format="ml-100k")


def load_ratings_dat(path: str | os.PathLike[str]) -> InteractionDataset:
    """Load a MovieLens 1M / 10M ``ratings.dat`` (or its directory)."""
    return load_ratings(_in_dir(path, "ratings.dat"), format="dat")


def load_ratings_csv(path: str | os.PathLike[str]) -> InteractionDataset:
    """Load a MovieLens latest / 20M / 25M ``ratings.csv`` (or its directory)."""
    return load_ratings(_in_dir(path, "ratings.csv"), format="csv")


def _in_dir(path: str | os.PathLike[str], name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    return p / name if p.is_dir() else p


def _load(file: Path, fmt: str) -> InteractionDataset:
    layout = _LAYOUTS[fmt]
    parts: list[np.ndarray] = []
    for block, first_line in _blocks(file, layout):
        parts.append(_parse_block(block, first_line, file, layout))
    rows = np.concatenate(parts) if parts else np.empty(0, dtype=_ROW_DTYPE)
    if rows.size == 0:
        raise DataFormatError(
            f"no ratings found (expected lines {layout.describe})", path=str(file)
        )
    return InteractionDataset.from_raw_ids(
        rows["user"], rows["item"], rows["timestamp"], rows["rating"], name=str(file)
    )


def _blocks(file: Path, layout: _Layout) -> Iterator[tuple[bytes, int]]:
    """Yield (block, number of its first line): whole lines, line endings made ``\\n``."""
    line = 1
    with open(file, "rb") as fh:
        head = fh.read(_BLOCK_BYTES)
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:]
        pending = head
        if layout.header is not None:
            pending = _check_header(fh, pending, file, layout)
            line = 2
        eof = not pending
        while not eof:
            more = fh.read(_BLOCK_BYTES)
            eof = not more
            buf = pending + more
            if not eof and buf.endswith(b"\r"):
                buf += fh.read(1)  # never split a CRLF pair between blocks
            cut = len(buf) if eof else max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
            if cut <= 0:  # one line longer than a block: keep reading
                pending = buf
                continue
            block, pending = buf[:cut], buf[cut:]
            block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if block:
                yield block, line
                line += block.count(b"\n")
        if pending:
            yield pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n"), line


def _check_header(fh: io.BufferedReader, head: bytes, file: Path, layout: _Layout) -> bytes:
    """Check the header line and return what follows it."""
    while not any(c in head for c in (b"\n", b"\r")):
        more = fh.read(_BLOCK_BYTES)
        if not more:
            break
        head += more
    end = min((i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0), default=len(head))
    first = head[:end].decode("utf-8", errors="replace").strip()
    if first != layout.header:
        raise DataFormatError(
            f"expected the header line {layout.header!r}, found {first[:80]!r}",
            path=str(file),
            line=1,
        )
    rest = head[end:]
    if rest.startswith(b"\r\n"):
        return rest[2:]
    return rest[1:]


def _parse_block(block: bytes, first_line: int, file: Path, layout: _Layout) -> np.ndarray:
    fast = _parse_block_fast(block, layout)
    if fast is not None:
        return fast
    return _parse_block_by_line(block, first_line, file, layout)


def _parse_block_fast(block: bytes, layout: _Layout) -> np.ndarray | None:
    """numpy's C reader; ``None`` when anything is off (the slow path names it)."""
    if not block.strip(b"\n"):
        return np.empty(0, dtype=_ROW_DTYPE)
    text = block if len(layout.separator) == 1 else block.replace(layout.separator, b"\x1f")
    delim = layout.separator.decode() if len(layout.separator) == 1 else "\x1f"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = np.loadtxt(
                io.BytesIO(text),
                delimiter=delim,
                dtype=_ROW_DTYPE,
                comments=None,
                quotechar=None,
                ndmin=1,
                encoding="latin-1",
            )
    except (ValueError, OverflowError, TypeError):
        return None
    ok = (
        np.all(np.isfinite(rows["rating"]))
        and (rows["user"].min() >= 0)
        and (rows["item"].min() >= 0)
        and (rows["timestamp"].min() >= 0)
    )
    return rows if ok else None


def _parse_block_by_line(block: bytes, first_line: int, file: Path, layout: _Layout) -> np.ndarray:
    """Parse line by line, raising DataFormatError at the first bad line."""
    out: list[tuple[int, int, float, int]] = []
    for offset, raw in enumerate(block.split(b"\n")):
        if not raw.strip():
            continue
        lineno = first_line + offset
        fields = raw.split(layout.separator)
        if len(fields) != 4:
            raise DataFormatError(
                f"expected 4 fields {layout.describe}, found {len(fields)}: "
                f"{raw[:80].decode('latin-1')!r}",
                path=str(file),
                line=lineno,
            )
        user = _parse_int(fields[0], _FIELDS[0], file, lineno)
        item = _parse_int(fields[1], _FIELDS[1], file, lineno)
        rating = _parse_rating(fields[2], file, lineno)
        timestamp = _parse_int(fields[3], _FIELDS[3], file, lineno)
        out.append((user, item, rating, timestamp))
    return np.array(out, dtype=_ROW_DTYPE) if out else np.empty(0, dtype=_ROW_DTYPE)


def _parse_int(field: bytes, what: str, file: Path, lineno: int) -> int:
    text = field.strip()
    if not text.isdigit():
        raise DataFormatError(
            f"expected the {what} to be a non-negative integer, found "
            f"{field[:40].decode('latin-1')!r}",
            path=str(file),
            line=lineno,
        )
    value = int(text)
    if value > _INT64_MAX:
        raise DataFormatError(
            f"the {what} {value} does not fit in 64 bits", path=str(file), line=lineno
        )
    return value


def _parse_rating(field: bytes, file: Path, lineno: int) -> float:
    try:
        value = float(field.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataFormatError(
            f"expected the rating to be a finite number, found {field[:40].decode('latin-1')!r}",
            path=str(file),
            line=lineno,
        )
    return value
