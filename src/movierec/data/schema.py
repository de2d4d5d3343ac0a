"""Canonical tables of movierec and the raw file formats that feed them.

Every source (MovieLens CSV, ``::``-separated ``.dat``, ml-100k, event logs) is parsed into
one of four canonical tables. Column names are snake_case; ids are positive int32.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TableKind = Literal["ratings", "movies", "links", "tags"]
TABLE_KINDS: tuple[TableKind, ...] = ("ratings", "movies", "links", "tags")

#: Earliest plausible MovieLens timestamp: 1995-01-01T00:00:00Z (the first ratings are 1995-01-09).
MIN_TIMESTAMP = 788_918_400
#: Largest id we accept (ids are stored as int32).
MAX_ID = 2**31 - 1

ML100K_GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

CANONICAL: dict[TableKind, pa.Schema] = {
    "ratings": pa.schema(
        [
            ("user_id", pa.int32()),
            ("movie_id", pa.int32()),
            ("rating", pa.float32()),
            ("timestamp", pa.int64()),
        ]
    ),
    "movies": pa.schema(
        [
            ("movie_id", pa.int32()),
            ("title", pa.string()),
            ("year", pa.int16()),
            ("genres", pa.list_(pa.string())),
        ]
    ),
    "links": pa.schema(
        [("movie_id", pa.int32()), ("imdb_id", pa.string()), ("tmdb_id", pa.int64())]
    ),
    "tags": pa.schema(
        [
            ("user_id", pa.int32()),
            ("movie_id", pa.int32()),
            ("tag", pa.string()),
            ("timestamp", pa.int64()),
        ]
    ),
}

#: Key columns: a repeated key is a duplicate, resolved by the dedup rule.
KEYS: dict[TableKind, tuple[str, ...]] = {
    "ratings": ("user_id", "movie_id"),
    "movies": ("movie_id",),
    "links": ("movie_id",),
    "tags": ("user_id", "movie_id", "tag", "timestamp"),
}

_YEAR_RE = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")


def parse_year(title: str) -> int | None:
    """Return the release year at the end of a MovieLens title, e.g. ``"Heat (1995)"`` -> 1995."""
    m = _YEAR_RE.search(title.strip())
    return int(m.group(1)) if m else None


def split_genres(genres: str) -> list[str]:
    """Split a ``|``-separated genre string; ``(no genres listed)`` means none."""
    if not genres or genres == "(no genres listed)":
        return []
    return [g for g in genres.split("|") if g]


@dataclass(frozen=True)
class Problem:
    """Rows failing one rule: a boolean mask over a table, the field and the reason."""

    mask: np.ndarray
    field: str
    reason: str


@dataclass(frozen=True)
class FileFormat:
    """How one raw file is laid out and how its rows become a canonical table.

    Attributes:
        kind: The canonical table the file feeds.
        columns: Raw column names in file order.
        types: Arrow type of each raw column (``pa.int64()``, ``pa.float64()``, ``pa.string()``).
        header: Expected header fields, or ``None`` when the file has no header line.
        delimiter: Field separator; ``"::"`` is supported (``.dat`` releases).
        encoding: Text encoding of the file.
        quoted: Whether fields may be double-quoted (CSV) or are taken literally.
        nullable: Raw columns that may be empty.
        to_canonical: Turns a parsed raw table into the canonical table of :attr:`kind`.
    """

    kind: TableKind
    columns: tuple[str, ...]
    types: dict[str, pa.DataType]
    header: tuple[str, ...] | None
    to_canonical: Callable[[pa.Table], pa.Table]
    delimiter: str = ","
    encoding: str = "utf-8"
    quoted: bool = True
    nullable: frozenset[str] = field(default_factory=frozenset)


def _ratings(t: pa.Table, u: str, m: str, r: str, ts: str) -> pa.Table:
    return pa.table(
        {
            "user_id": t[u].cast(pa.int64()),
            "movie_id": t[m].cast(pa.int64()),
            "rating": t[r].cast(pa.float64()),
            "timestamp": t[ts].cast(pa.int64()),
        }
    )


def _movies(ids: pa.ChunkedArray, titles: list[str], genres: list[list[str]]) -> pa.Table:
    stripped = [s.strip() for s in titles]
    years = [parse_year(s) for s in stripped]
    return pa.table(
        {
            "movie_id": ids.cast(pa.int64()),
            "title": pa.array(stripped, pa.string()),
            "year": pa.array(years, pa.int64()),
            "genres": pa.array(genres, pa.list_(pa.string())),
        }
    )


def _csv_movies(t: pa.Table) -> pa.Table:
    return _movies(
        t["movieId"],
        t["title"].to_pylist(),
        [split_genres(g) for g in t["genres"].to_pylist()],
    )


def _dat_movies(t: pa.Table) -> pa.Table:
    return _movies(
        t["MovieID"],
        t["Title"].to_pylist(),
        [split_genres(g) for g in t["Genres"].to_pylist()],
    )


def _u_item(t: pa.Table) -> pa.Table:
    flags = np.stack([t[f"g{i}"].to_numpy(zero_copy_only=False) for i in range(19)], axis=1)
    genres = [[ML100K_GENRES[j] for j in np.flatnonzero(row) if j > 0] for row in flags]
    return _movies(t["movie_id"], t["title"].to_pylist(), genres)


def _links(t: pa.Table) -> pa.Table:
    return pa.table(
        {
            "movie_id": t["movieId"].cast(pa.int64()),
            "imdb_id": t["imdbId"],
            "tmdb_id": t["tmdbId"].cast(pa.int64()),
        }
    )


def _tags(t: pa.Table, u: str, m: str, tag: str, ts: str) -> pa.Table:
    return pa.table(
        {
            "user_id": t[u].cast(pa.int64()),
            "movie_id": t[m].cast(pa.int64()),
            "tag": pc.utf8_trim_whitespace(t[tag]),
            "timestamp": t[ts].cast(pa.int64()),
        }
    )


I64, F64, STR = pa.int64(), pa.float64(), pa.string()

CSV_RATINGS = FileFormat(
    "ratings",
    ("userId", "movieId", "rating", "timestamp"),
    {"userId": I64, "movieId": I64, "rating": F64, "timestamp": I64},
    ("userId", "movieId", "rating", "timestamp"),
    lambda t: _ratings(t, "userId", "movieId", "rating", "timestamp"),
)
CSV_MOVIES = FileFormat(
    "movies",
    ("movieId", "title", "genres"),
    {"movieId": I64, "title": STR, "genres": STR},
    ("movieId", "title", "genres"),
    _csv_movies,
)
CSV_LINKS = FileFormat(
    "links",
    ("movieId", "imdbId", "tmdbId"),
    {"movieId": I64, "imdbId": STR, "tmdbId": I64},
    ("movieId", "imdbId", "tmdbId"),
    _links,
    nullable=frozenset({"tmdbId"}),
)
CSV_TAGS = FileFormat(
    "tags",
    ("userId", "movieId", "tag", "timestamp"),
    {"userId": I64, "movieId": I64, "tag": STR, "timestamp": I64},
    ("userId", "movieId", "tag", "timestamp"),
    lambda t: _tags(t, "userId", "movieId", "tag", "timestamp"),
)
DAT_RATINGS = FileFormat(
    "ratings",
    ("UserID", "MovieID", "Rating", "Timestamp"),
    {"UserID": I64, "MovieID": I64, "Rating": F64, "Timestamp": I64},
    None,
    lambda t: _ratings(t, "UserID", "MovieID", "Rating", "Timestamp"),
    delimiter="::",
    encoding="latin-1",
    quoted=False,
)
DAT_MOVIES = FileFormat(
    "movies",
    ("MovieID", "Title", "Genres"),
    {"MovieID": I64, "Title": STR, "Genres": STR},
    None,
    _dat_movies,
    delimiter="::",
    encoding="latin-1",
    quoted=False,
)
DAT_TAGS = FileFormat(
    "tags",
    ("UserID", "MovieID", "Tag", "Timestamp"),
    {"UserID": I64, "MovieID": I64, "Tag": STR, "Timestamp": I64},
    None,
    lambda t: _tags(t, "UserID", "MovieID", "Tag", "Timestamp"),
    delimiter="::",
    encoding="latin-1",
    quoted=False,
)
U_DATA = FileFormat(
    "ratings",
    ("user_id", "item_id", "rating", "timestamp"),
    {"user_id": I64, "item_id": I64, "rating": F64, "timestamp": I64},
    None,
    lambda t: _ratings(t, "user_id", "item_id", "rating", "timestamp"),
    delimiter="\t",
    quoted=False,
)
_U_ITEM_COLS = (
    "movie_id",
    "title",
    "release_date",
    "video_release_date",
    "imdb_url",
    *(f"g{i}" for i in range(19)),
)
U_ITEM = FileFormat(
    "movies",
    _U_ITEM_COLS,
    {c: (I64 if c == "movie_id" or c.startswith("g") else STR) for c in _U_ITEM_COLS},
    None,
    _u_item,
    delimiter="|",
    encoding="latin-1",
    quoted=False,
)

#: Format of the CSV release files by canonical kind (the ``data validate --kind`` default).
CSV_FORMATS: dict[TableKind, FileFormat] = {
    "ratings": CSV_RATINGS,
    "movies": CSV_MOVIES,
    "links": CSV_LINKS,
    "tags": CSV_TAGS,
}


def _id_problems(t: pa.Table, col: str) -> list[Problem]:
    v = t[col].to_numpy(zero_copy_only=False)
    return [Problem((v <= 0) | (v > MAX_ID), col, "id must be a positive 32-bit integer")]


def _ts_problems(t: pa.Table, now: int) -> list[Problem]:
    ts = t["timestamp"].to_numpy(zero_copy_only=False)
    return [
        Problem(
            (ts < MIN_TIMESTAMP) | (ts > now),
            "timestamp",
            f"timestamp outside the plausible range [{MIN_TIMESTAMP}, now]",
        )
    ]


def check_rules(kind: TableKind, t: pa.Table, now: int | None = None) -> list[Problem]:
    """Return the range/shape problems of a canonical table (before its final cast).

    Rules: ids are positive int32; ratings lie in [0.5, 5] in half steps; timestamps lie
    between 1995-01-01 and now (plus one day of clock skew); titles and tags are not empty.
    """
    now = int(time.time()) + 86_400 if now is None else now
    problems: list[Problem] = []
    if kind in ("ratings", "tags"):
        problems += _id_problems(t, "user_id")
    problems += _id_problems(t, "movie_id")
    if kind == "ratings":
        r = t["rating"].to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(r) | (r < 0.5) | (r > 5.0) | (np.round(r * 2) != r * 2)
        problems.append(Problem(bad, "rating", "rating must be in [0.5, 5] in half steps"))
    if kind in ("ratings", "tags"):
        problems += _ts_problems(t, now)
    if kind == "movies":
        empty = pc.equal(pc.utf8_length(t["title"]), 0).to_numpy(zero_copy_only=False)
        problems.append(Problem(empty, "title", "title is empty"))
    if kind == "tags":
        empty = pc.equal(pc.utf8_length(t["tag"]), 0).to_numpy(zero_copy_only=False)
        problems.append(Problem(empty, "tag", "tag is empty"))
    if kind == "links":
        digits = pc.match_substring_regex(t["imdb_id"], r"^\d+$").to_numpy(zero_copy_only=False)
        problems.append(Problem(~digits, "imdb_id", "imdbId must be digits"))
        tmdb = t["tmdb_id"].to_numpy(zero_copy_only=False)
        tmdb = np.nan_to_num(tmdb.astype(np.float64), nan=1.0)
        problems.append(Problem(tmdb <= 0, "tmdb_id", "tmdbId must be positive when present"))
    return problems
