from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.data.dedup import dedup_order
from movierec.data.schema import CSV_LINKS, CSV_MOVIES, CSV_RATINGS, parse_year
from movierec.data.validate import validate_file
from movierec.errors import InvalidDataError, RejectRateExceededError
from tests.conftest import write

HEADER = "userId,movieId,rating,timestamp\n"
GOOD = "1,10,4.0,964982703\n1,20,3.5,964982704\n2,10,5.0,964982705\n"


def test_clean_file_has_no_rejects(tmp_path: Path) -> None:
    res = validate_file(write(tmp_path / "r.csv", HEADER + GOOD), CSV_RATINGS)
    assert res.table.num_rows == 3
    assert res.report.reject_rows == 0 and res.report.reject_rate == 0.0
    assert res.table.column("rating").to_pylist() == [4.0, 3.5, 5.0]
    assert res.table.schema.field("user_id").type.bit_width == 32


def test_crlf_and_bom_are_accepted(tmp_path: Path) -> None:
    text = ("\ufeff" + HEADER + GOOD).replace("\n", "\r\n")
    res = validate_file(write(tmp_path / "r.csv", text), CSV_RATINGS)
    assert res.table.num_rows == 3 and res.report.reject_rows == 0


def test_bad_header_is_refused_with_line_1(tmp_path: Path) -> None:
    with pytest.raises(InvalidDataError) as e:
        validate_file(write(tmp_path / "r.csv", "user,movie,rating,ts\n" + GOOD), CSV_RATINGS)
    assert e.value.line == 1 and "bad header" in str(e.value)
    assert str(tmp_path / "r.csv") in str(e.value)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidDataError, match="empty file"):
        validate_file(write(tmp_path / "r.csv", ""), CSV_RATINGS)


def test_header_only_file_is_valid_and_empty(tmp_path: Path) -> None:
    res = validate_file(write(tmp_path / "r.csv", HEADER), CSV_RATINGS)
    assert res.table.num_rows == 0 and res.report.input_rows == 0


@pytest.mark.parametrize(
    ("bad_line", "field", "reason"),
    [
        ("3,10,4.0", "*", "wrong column count: expected 4, found 3"),
        ("3,10,4.0,964982703,9", "*", "wrong column count: expected 4, found 5"),
        ("3,10,abc,964982703", "rating", "not a number"),
        ("3,10,7.0,964982703", "rating", "rating must be in [0.5, 5] in half steps"),
        ("3,10,3.7,964982703", "rating", "half steps"),
        ("3,10,0.0,964982703", "rating", "half steps"),
        ("-3,10,4.0,964982703", "user_id", "positive 32-bit"),
        ("3,-10,4.0,964982703", "movie_id", "positive 32-bit"),
        ("3,10,4.0,12", "timestamp", "plausible range"),
        ("3,10,4.0,99999999999", "timestamp", "plausible range"),
        ("3,1.5,4.0,964982703", "movieId", "not an integer"),
        ("3,,4.0,964982703", "movieId", "missing value"),
        ("", "*", "empty line"),
    ],
)
def test_each_malformed_row_is_rejected_and_nothing_valid_is_lost(
    tmp_path: Path, bad_line: str, field: str, reason: str
) -> None:
    text = HEADER + "1,10,4.0,964982703\n" + bad_line + "\n" + "2,10,5.0,964982705\n"
    res = validate_file(write(tmp_path / "r.csv", text), CSV_RATINGS)
    assert res.report.input_rows == 3
    assert res.report.reject_rows == 1
    rej = res.report.rejects[0]
    assert (rej.line, rej.field) == (3, field)
    assert reason in rej.reason
    assert rej.source == str(tmp_path / "r.csv")
    assert res.table.num_rows == 2
    assert res.table.column("user_id").to_pylist() == [1, 2]


def test_undecodable_bytes_in_text_column(tmp_path: Path) -> None:
    data = (
        b"movieId,title,genres\n1,Heat (1995),Action\n"
        b"2,Bad \xff\xfe title (1999),Drama\n3,Up (2009),Animation\n"
    )
    res = validate_file(write(tmp_path / "m.csv", data), CSV_MOVIES)
    assert [r.line for r in res.report.rejects] == [3]
    assert "undecodable" in res.report.rejects[0].reason
    assert res.table.column("movie_id").to_pylist() == [1, 3]
    assert res.table.column("year").to_pylist() == [1995, 2009]


def test_movies_titles_with_commas_quotes_and_genres(tmp_path: Path) -> None:
    data = (
        'movieId,title,genres\n1,"American President, The (1995)",Comedy|Drama|Romance\n'
        '2,"Bad ""quoted"" (2001)",(no genres listed)\n3,No Year Movie,Drama\n'
    )
    res = validate_file(write(tmp_path / "m.csv", data), CSV_MOVIES)
    rows = res.table.to_pylist()
    assert rows[0]["title"] == "American President, The (1995)"
    assert rows[0]["genres"] == ["Comedy", "Drama", "Romance"]
    assert rows[1]["title"] == 'Bad "quoted" (2001)' and rows[1]["genres"] == []
    assert rows[2]["year"] is None


def test_links_keep_leading_zeros_and_allow_empty_tmdb(tmp_path: Path) -> None:
    res = validate_file(
        write(tmp_path / "l.csv", "movieId,imdbId,tmdbId\n1,0114709,862\n2,0113497,\n"), CSV_LINKS
    )
    assert res.table.to_pylist() == [
        {"movie_id": 1, "imdb_id": "0114709", "tmdb_id": 862},
        {"movie_id": 2, "imdb_id": "0113497", "tmdb_id": None},
    ]


def test_duplicates_keep_latest_and_are_reported(tmp_path: Path) -> None:
    text = (
        HEADER + "1,10,2.0,964982710\n1,10,4.0,964982700\n1,20,3.0,964982703\n1,10,2.0,964982710\n"
    )
    res = validate_file(write(tmp_path / "r.csv", text), CSV_RATINGS)
    assert res.table.num_rows == 2
    by_movie = {r["movie_id"]: r for r in res.table.to_pylist()}
    assert by_movie[10] == {"user_id": 1, "movie_id": 10, "rating": 2.0, "timestamp": 964982710}
    assert res.report.duplicate_rows == 2 and res.report.reject_rows == 0
    assert res.report.clean_rows == 2
    dup_lines = sorted(r.line for r in res.report.rejects)
    assert dup_lines == [2, 3]  # line 5 (the latest, tie broken by the later line) wins
    assert all("superseded by line 5" in r.reason for r in res.report.rejects)


def test_dedup_first_rule(tmp_path: Path) -> None:
    text = HEADER + "1,10,2.0,964982710\n1,10,4.0,964982700\n"
    res = validate_file(write(tmp_path / "r.csv", text), CSV_RATINGS, dedup="first")
    assert res.table.column("rating").to_pylist() == [2.0]
    assert "first line wins" in res.report.dedup_rule


def test_report_json_and_reject_file(tmp_path: Path) -> None:
    text = HEADER + GOOD + "x,1,1,1\n"
    res = validate_file(write(tmp_path / "r.csv", text), CSV_RATINGS)
    res.report.write_rejects(tmp_path / "rej.jsonl")
    res.report.write(tmp_path / "rep.json")
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert {k: rep[k] for k in ("input_rows", "clean_rows", "reject_rows")} == {
        "input_rows": 4,
        "clean_rows": 3,
        "reject_rows": 1,
    }
    assert rep["reject_rate"] == pytest.approx(0.25)
    assert rep["rejects"][0] == {
        "source": str(tmp_path / "r.csv"),
        "line": 5,
        "field": "userId",
        "reason": "not an integer: 'x'",
        "raw": "x,1,1,1",
    }
    lines = (tmp_path / "rej.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["line"] == 5
    with pytest.raises(RejectRateExceededError, match="above --max-reject-rate"):
        res.report.check_rate(0.1)
    res.report.check_rate(0.3)


def test_chunking_gives_the_same_result(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [HEADER]
    for i in range(3000):
        if i % 97 == 0:
            rows.append(f"{i},bad,4.0,964982703\n")
        else:
            r = rng.integers(1, 11) / 2
            rows.append(f"{i % 50 + 1},{i},{r},{964982703 + i}\n")
    path = write(tmp_path / "r.csv", "".join(rows))
    big = validate_file(path, CSV_RATINGS)
    small = validate_file(path, CSV_RATINGS, chunk_bytes=1024)
    assert big.table.equals(small.table)
    assert [r.line for r in big.report.rejects] == [r.line for r in small.report.rejects]
    assert big.report.reject_rows == 31
    assert [r.line for r in big.report.rejects][:2] == [2, 99]


@pytest.mark.parametrize(
    ("title", "year"),
    [
        ("Heat (1995)", 1995),
        ("Babylon 5", None),
        ("Fawlty Towers (1975-1979)", 1975),
        ("Wild Child (2008) ", 2008),
        ("1984 (1984)", 1984),
    ],
)
def test_parse_year(title: str, year: int | None) -> None:
    assert parse_year(title) == year


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 3)), min_size=0, max_size=40
    ),
    st.sampled_from(["latest", "first"]),
)
def test_dedup_order_properties(rows: list[tuple[int, int, int]], keep: str) -> None:
    keys = np.array([k for k, _, _ in rows], dtype=np.int64)
    ts = np.array([t for _, t, _ in rows], dtype=np.int64)
    order = np.arange(len(rows), dtype=np.int64)
    kept, dropped, winners = dedup_order(keys, ts, order, keep)  # type: ignore[arg-type]
    # one row per key, every row either kept or dropped
    assert sorted(keys[kept].tolist()) == sorted(set(keys.tolist()))
    assert sorted(kept.tolist() + dropped.tolist()) == list(range(len(rows)))
    for d, w in zip(dropped, winners, strict=True):
        assert keys[d] == keys[w] and w in kept
    for k in set(keys.tolist()):
        group = [i for i in range(len(rows)) if keys[i] == k]
        expect = group[0] if keep == "first" else max(group, key=lambda i: (ts[i], i))
        assert expect in kept
