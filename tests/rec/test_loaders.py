"""MovieLens loaders: every layout, every line ending, exact errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg_rec.errors import DataFormatError
from secagg_rec.rec import loaders
from secagg_rec.rec.loaders import (
    detect_format,
    find_ratings_file,
    load_ml100k,
    load_ratings,
    load_ratings_csv,
    load_ratings_dat,
)

ROWS = [(196, 242, 3.0, 881250949), (186, 302, 3.0, 891717742), (22, 377, 1.0, 878887116)]
SEPARATORS = {"u.data": "\t", "ratings.dat": "::", "ratings.csv": ","}
HEADER = "userId,movieId,rating,timestamp"


def _write(path: Path, rows, sep: str, eol: str, header: str | None = None) -> Path:
    lines = [header] if header else []
    lines += [sep.join(_fmt(v) for v in row) for row in rows]
    path.write_bytes((eol.join(lines) + eol).encode())
    return path


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _check_rows(ds, rows) -> None:
    got = sorted(
        zip(
            ds.user_ids[ds.users].tolist(),
            ds.item_ids[ds.items].tolist(),
            ds.ratings.tolist(),
            ds.timestamps.tolist(),
            strict=True,
        )
    )
    assert got == sorted(rows)


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("name", ["u.data", "ratings.dat", "ratings.csv"])
def test_each_layout_parses_with_any_line_ending(tmp_path, name, eol):
    header = HEADER if name == "ratings.csv" else None
    path = _write(tmp_path / name, ROWS, SEPARATORS[name], eol, header)
    ds = load_ratings(path)
    _check_rows(ds, ROWS)
    assert ds.n_users == 3 and ds.n_items == 3
    assert ds.user_ids.tolist() == [22, 186, 196]  # dense index follows raw-id order


def test_directory_is_searched_for_the_ratings_file(tmp_path):
    _write(tmp_path / "ratings.dat", ROWS, "::", "\n")
    path, fmt = find_ratings_file(tmp_path)
    assert (path.name, fmt) == ("ratings.dat", "dat")
    _check_rows(load_ratings(tmp_path), ROWS)
    _check_rows(load_ratings_dat(tmp_path), ROWS)


def test_specific_loaders_accept_file_or_directory(tmp_path):
    _write(tmp_path / "u.data", ROWS, "\t", "\n")
    _write(tmp_path / "ratings.csv", ROWS, ",", "\n", HEADER)
    _check_rows(load_ml100k(tmp_path), ROWS)
    _check_rows(load_ml100k(tmp_path / "u.data"), ROWS)
    _check_rows(load_ratings_csv(tmp_path), ROWS)


def test_half_star_ratings_and_bom_and_blank_lines(tmp_path):
    path = tmp_path / "ratings.csv"
    body = f"{HEADER}\r\n1,31,2.5,1260759144\r\n\r\n1,1029,3.5,1260759179\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    ds = load_ratings(path)
    assert sorted(ds.ratings.tolist()) == [2.5, 3.5]
    assert ds.n_interactions == 2


def test_missing_file_and_directory_without_ratings(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_ratings(tmp_path / "nope" / "u.data")
    with pytest.raises(FileNotFoundError, match=r"u\.data, ratings\.dat, ratings\.csv"):
        load_ratings(tmp_path)


def test_unknown_suffix_and_format_and_type(tmp_path):
    (tmp_path / "ratings.txt").write_text("1\t2\t3\t4\n")
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_ratings(tmp_path / "ratings.txt")
    assert load_ratings(tmp_path / "ratings.txt", format="ml-100k").n_interactions == 1
    with pytest.raises(ValueError, match="format must be one of"):
        load_ratings(tmp_path / "ratings.txt", format="xml")
    with pytest.raises(TypeError):
        load_ratings(42)  # type: ignore[arg-type]
    assert detect_format("x/ratings.DAT") == "dat"


@pytest.mark.parametrize(
    ("name", "bad_line", "expected"),
    [
        ("u.data", "1\t2\t3", "expected 4 fields user_id<TAB>item_id<TAB>rating<TAB>timestamp"),
        ("u.data", "1\tx\t3\t4", "expected the item id to be a non-negative integer"),
        ("u.data", "-1\t2\t3\t4", "expected the user id to be a non-negative integer"),
        ("u.data", "1\t2\t3\t4.5", "expected the timestamp to be a non-negative integer"),
        ("ratings.dat", "1::2::three::4", "expected the rating to be a finite number"),
        ("ratings.dat", "1::2::nan::4", "expected the rating to be a finite number"),
        ("ratings.dat", "1:2::3::4", "expected 4 fields UserID::MovieID::Rating::Timestamp"),
        ("ratings.csv", "1,2,3,4,5", "expected 4 fields userId,movieId,rating,timestamp"),
        ("ratings.csv", "1,2,,4", "expected the rating to be a finite number"),
        ("ratings.csv", "1,99999999999999999999,3,4", "does not fit in 64 bits"),
    ],
)
@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_malformed_line_names_file_line_and_expectation(tmp_path, name, bad_line, expected, eol):
    sep = SEPARATORS[name]
    header = HEADER if name == "ratings.csv" else None
    good = [sep.join(_fmt(v) for v in row) for row in ROWS]
    lines = ([header] if header else []) + good[:2] + [bad_line] + good[2:]
    path = tmp_path / name
    path.write_bytes((eol.join(lines) + eol).encode())
    with pytest.raises(DataFormatError, match=expected) as info:
        load_ratings(path)
    bad_lineno = lines.index(bad_line) + 1
    assert info.value.path == str(path)
    assert info.value.line == bad_lineno
    assert str(info.value).startswith(f"{path}:{bad_lineno}: ")


def test_csv_header_is_required(tmp_path):
    path = _write(tmp_path / "ratings.csv", ROWS, ",", "\n")  # no header
    with pytest.raises(DataFormatError, match="expected the header line") as info:
        load_ratings(path)
    assert info.value.line == 1


def test_empty_file_is_an_error(tmp_path):
    (tmp_path / "u.data").write_bytes(b"\n\n")
    with pytest.raises(DataFormatError, match="no ratings found") as info:
        load_ratings(tmp_path)
    assert info.value.line is None


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_block_boundaries_keep_rows_and_line_numbers(tmp_path, monkeypatch, eol):
    monkeypatch.setattr(loaders, "_BLOCK_BYTES", 7)  # many blocks, CRLF pairs split
    rows = [(u, 1000 + u, 1.0 + u % 5, 880000000 + u) for u in range(1, 60)]
    path = _write(tmp_path / "ratings.csv", rows, ",", eol, HEADER)
    _check_rows(load_ratings(path), rows)
    text = path.read_bytes().decode().split(eol)
    text[41] = "41,xx,1,2"
    path.write_bytes(eol.join(text).encode())
    with pytest.raises(DataFormatError) as info:
        load_ratings(path)
    assert info.value.line == 42


_row = st.tuples(
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.sampled_from([0.5, 1.0, 3.5, 5.0]),
    st.integers(0, 2**40),
)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(_row, min_size=1, max_size=30),
    name=st.sampled_from(sorted(SEPARATORS)),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_any_valid_file_round_trips(tmp_path_factory, rows, name, eol):
    path = tmp_path_factory.mktemp("rt") / name
    header = HEADER if name == "ratings.csv" else None
    _write(path, rows, SEPARATORS[name], eol, header)
    ds = load_ratings(path)
    _check_rows(ds, rows)
    assert ds.n_users == len({r[0] for r in rows})
    assert np.all(np.diff(ds.item_ids) > 0)
