"""Parsing of the movie-streaming event log (the Kafka ``movielog`` format).

Lines look like::

    2024-03-01T10:15:02,4012,GET /data/m/the+matrix+1999/12.mpg
    2024-03-01T10:16:40,4012,GET /rate/the+matrix+1999=4
    2024-03-01T10:17:00,4012,recommendation request node7:8082, status 200, result: 1, 2, 3, 87 ms

Each event keeps its own timestamp (not the time it was parsed). The movie is a MovieLens id
or a title slug (``the+matrix+1999``) resolved through the movie catalog. Watch minutes of
one (user, movie) aggregate into a *watch depth* (distinct minutes watched), usable as an
implicit-feedback confidence.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from movierec.data.dedup import DedupKeep, dedup_order
from movierec.data.events_fast import as_series, fast_rows
from movierec.data.report import Reject, ValidationReport
from movierec.data.schema import CANONICAL, MIN_TIMESTAMP

logger = logging.getLogger(__name__)

_LINE_RE = re.compile(r"^(?P<time>[^,]+),(?P<user>[^,]+),(?P<body>.*)$")
_WATCH_RE = re.compile(r"^GET /data/m/(?P<movie>[^/\s]+)/(?P<minute>\d+)\.mpg\s*$")
_RATE_RE = re.compile(r"^GET /rate/(?P<movie>[^=\s]+)=(?P<rating>\S+)\s*$")
_RECO_RE = re.compile(
    r"^recommendation request (?P<server>[^,]*), status (?P<status>\d+), "
    r"result: (?P<result>.*?),\s*(?P<latency>\d+(?:\.\d+)?) ?ms\s*$"
)
_SLUG_RE = re.compile(r"[^a-z0-9]+")
_ARTICLE_RE = re.compile(r"^(?P<name>.*), (?P<article>The|A|An|Les|La|Le|L'|Il|Das|Der|Die)$")

WATCHES_SCHEMA = pa.schema(
    [
        ("user_id", pa.int32()),
        ("movie_id", pa.int32()),
        ("minute", pa.int32()),
        ("timestamp", pa.int64()),
    ]
)
REQUESTS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int32()),
        ("timestamp", pa.int64()),
        ("status", pa.int32()),
        ("result", pa.string()),
        ("latency_ms", pa.float64()),
    ]
)


def title_slug(title: str) -> str:
    """Slug of a title as the stream writes it.

    ``"Matrix, The (1999)"`` becomes ``the+matrix+1999``.
    """
    t = title.strip()
    year = ""
    m = re.search(r"\((\d{4})\)\s*$", t)
    if m:
        year = m.group(1)
        t = t[: m.start()].strip()
    a = _ARTICLE_RE.match(t)
    if a:
        t = f"{a.group('article')} {a.group('name')}"
    slug = _SLUG_RE.sub("+", t.lower()).strip("+")
    return f"{slug}+{year}" if year else slug


def slug_index(movies: pa.Table) -> dict[str, int]:
    """Map title slugs to movie ids for a canonical movies table."""
    return {
        title_slug(t): int(i)
        for i, t in zip(movies["movie_id"].to_pylist(), movies["title"].to_pylist(), strict=True)
    }


@functools.lru_cache(maxsize=1 << 16)
def parse_time(text: str) -> int:
    """Parse an ISO-8601 time (UTC when no zone is given) or Unix seconds.

    Cached: events of one second share their time text.
    """
    s = text.strip()
    if s.isdigit():
        return int(s)
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


@dataclass(frozen=True)
class EventLog:
    """Parsed events: watch minutes, ratings (canonical), recommendation requests, report."""

    watches: pa.Table
    ratings: pa.Table
    requests: pa.Table
    report: ValidationReport
    #: The server named by each request line (aligned with ``requests``).
    servers: tuple[str, ...] = ()
    #: The line number of each request line (aligned with ``requests``).
    request_lines: tuple[int, ...] = ()

    def watch_depth(self) -> pa.Table:
        """Aggregate watches into ``user_id, movie_id, rating, timestamp``.

        ``rating`` holds the watch depth: the number of distinct minutes watched, and
        ``timestamp`` the last watch event. Usable as implicit confidence.
        """
        return aggregate_watch_depth(self.watches)


def aggregate_watch_depth(watches: pa.Table) -> pa.Table:
    """Distinct minutes and last time per (user, movie) of a watch-minutes table."""
    if watches.num_rows == 0:
        return CANONICAL["ratings"].empty_table()
    grouped = watches.group_by(["user_id", "movie_id"]).aggregate(
        [("minute", "count_distinct"), ("timestamp", "max")]
    )
    table = pa.table(
        {
            "user_id": grouped["user_id"],
            "movie_id": grouped["movie_id"],
            "rating": grouped["minute_count_distinct"].cast(pa.float32()),
            "timestamp": grouped["timestamp_max"],
        }
    )
    return table.sort_by([("user_id", "ascending"), ("movie_id", "ascending")])


def _resolve(movie: str, slugs: dict[str, int] | None) -> int | None:
    if movie.isdigit():
        return int(movie)
    if slugs is None:
        return None
    return slugs.get(movie.lower())


def parse_lines(
    lines: Iterable[str] | pl.Series,
    *,
    source: str = "<events>",
    slugs: dict[str, int] | None = None,
    dedup: DedupKeep = "latest",
    now: int | None = None,
    vectorised: bool = True,
) -> EventLog:
    """Parse event-log lines; every unparseable line becomes a reject with its reason.

    Args:
        lines: Log lines (with or without line ends), or a polars string series of them.
        source: Name used in reject records.
        slugs: Title slug -> movie id (see :func:`slug_index`); numeric movie ids need none.
        dedup: Rule for repeated (user, movie) ratings, and repeated (user, movie, minute) watches.
        now: Upper bound of plausible timestamps (default: now + 1 day).
        vectorised: Parse plain numeric lines with polars first
            (:mod:`movierec.data.events_fast`; same results, several times faster).
    """
    upper = int(datetime.now(tz=UTC).timestamp()) + 86_400 if now is None else now
    report = ValidationReport(source=source, kind="events")
    rejects: list[Reject] = []
    series = as_series(lines if isinstance(lines, pl.Series) else list(lines))
    fast = fast_rows(series if vectorised else series.clear(), upper)
    if vectorised:
        rest_at = np.flatnonzero(~fast.accepted) + 1
        rest: list[str] = series.gather(rest_at - 1).to_list()
    else:
        rest_at, rest = np.arange(1, len(series) + 1), series.to_list()
    report.input_rows += len(series)
    w_rows: list[tuple[int, int, int, int]] = []
    w_lines: list[int] = []
    r_rows: list[tuple[int, int, float, int]] = []
    r_lines: list[int] = []
    q_rows: list[tuple[int, int, int, str, float, str]] = []
    q_lines: list[int] = []
    for line_no, line in zip(rest_at.tolist(), rest, strict=True):

        def bad(field: str, reason: str, _ln: int = line_no, _line: str = line) -> None:
            rejects.append(Reject(source, _ln, field, reason, _line))

        if not line.strip():
            bad("*", "empty line")
            continue
        m = _LINE_RE.match(line)
        if m is None:
            bad("*", "not '<time>,<user>,<request>'")
            continue
        try:
            ts = parse_time(m.group("time"))
        except ValueError:
            bad("time", f"unparseable time {m.group('time')[:40]!r}")
            continue
        if ts < MIN_TIMESTAMP or ts > upper:
            bad("time", "timestamp outside the plausible range")
            continue
        user_s = m.group("user").strip()
        if not user_s.isdigit() or not 0 < int(user_s) < 2**31:
            bad("user", f"user id must be a positive integer, found {user_s[:40]!r}")
            continue
        user = int(user_s)
        body = m.group("body").strip()
        w = _WATCH_RE.match(body)
        r = None if w is not None else _RATE_RE.match(body)
        event = w or r
        movie = 0
        if event is not None:
            resolved = _resolve(event.group("movie"), slugs)
            if resolved is None or not 0 < resolved < 2**31:
                bad("movie", f"unknown movie {event.group('movie')[:60]!r}")
                continue
            movie = resolved
        if w is not None:
            w_rows.append((user, movie, int(w.group("minute")), ts))
            w_lines.append(line_no)
        elif r is not None:
            try:
                rating = float(r.group("rating"))
            except ValueError:
                bad("rating", f"not a number: {r.group('rating')[:20]!r}")
                continue
            if not 0.5 <= rating <= 5.0 or rating * 2 != round(rating * 2):
                bad("rating", "rating must be in [0.5, 5] in half steps")
                continue
            r_rows.append((user, movie, rating, ts))
            r_lines.append(line_no)
        elif (q := _RECO_RE.match(body)) is not None:
            q_rows.append(
                (
                    user,
                    ts,
                    int(q.group("status")),
                    q.group("result").strip(),
                    float(q.group("latency")),
                    q.group("server").strip(),
                )
            )
            q_lines.append(line_no)
        else:
            bad("request", f"unknown request {body[:60]!r}")
    watches, _ = _merge(fast.watches, w_rows, w_lines, WATCHES_SCHEMA)
    ratings, r_lines = _merge(fast.ratings, r_rows, r_lines, CANONICAL["ratings"])
    requests, q_lines = _merge(fast.requests, q_rows, q_lines, _REQUESTS_WITH_SERVER)
    dup_rejects: list[Reject] = []
    if ratings.num_rows > 1:
        lines_arr = np.asarray(r_lines, dtype=np.int64)
        keys = (ratings["user_id"].to_numpy().astype(np.int64) << 32) | ratings[
            "movie_id"
        ].to_numpy().astype(np.int64)
        kept, dropped, winners = dedup_order(
            keys, ratings["timestamp"].to_numpy(), lines_arr, dedup
        )
        dup_rejects = [
            Reject(
                source,
                int(lines_arr[d]),
                "user_id,movie_id",
                f"duplicate rating; superseded by line {int(lines_arr[w])} ({dedup} wins)",
                "",
            )
            for d, w in zip(dropped, winners, strict=True)
        ]
        ratings = ratings.take(kept)
    report.rejects = sorted(rejects, key=lambda r: r.line) + sorted(
        dup_rejects, key=lambda r: r.line
    )
    report.reject_rows = len(rejects)
    report.duplicate_rows = len(dup_rejects)
    report.clean_rows = report.input_rows - report.reject_rows - report.duplicate_rows
    report.dedup_rule = (
        f"ratings: one per (user, movie), {dedup} wins; watches: distinct minutes per (user, movie)"
    )
    servers = requests["server"].to_pylist() if requests.num_rows else []
    return EventLog(
        watches,
        ratings,
        requests.drop_columns(["server"]),
        report,
        tuple(servers),
        tuple(q_lines),
    )


_REQUESTS_WITH_SERVER = REQUESTS_SCHEMA.append(pa.field("server", pa.string()))


def _merge(
    fast: pa.Table,
    rows: list[tuple[Any, ...]],
    lines: list[int],
    schema: pa.Schema,
) -> tuple[pa.Table, list[int]]:
    """Rows of both paths as one table in line order, and the line of each row."""
    slow = _rows_table(rows, schema)
    fast_lines = fast["line"].to_numpy()
    if not fast_lines.size:
        return slow, lines
    quick = fast.select(schema.names).cast(schema)
    if not rows:
        return quick, fast_lines.tolist()
    both = pa.concat_tables([quick, slow])
    line_no = np.concatenate([fast_lines, np.asarray(lines, dtype=np.int64)])
    order = np.argsort(line_no, kind="stable")
    return both.take(order), line_no[order].tolist()


def _rows_table(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    if not rows:
        return schema.empty_table()
    columns = list(zip(*rows, strict=True))
    return pa.table({n: pa.array(c) for n, c in zip(schema.names, columns, strict=True)}).cast(
        schema
    )


def parse_event_file(
    path: Path, *, slugs: dict[str, int] | None = None, dedup: DedupKeep = "latest"
) -> EventLog:
    """Parse an event-log file (UTF-8; undecodable bytes make their line a reject)."""
    lines: list[str] = []
    undecodable: list[int] = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append("\x00")  # placeholder, replaced by a reject below
                undecodable.append(n)
    log = parse_lines(lines, source=str(path), slugs=slugs, dedup=dedup)
    if undecodable:
        bad = set(undecodable)
        kept = [r for r in log.report.rejects if r.line not in bad]
        kept += [
            Reject(str(path), n, "*", "undecodable bytes (not utf-8)", "") for n in undecodable
        ]
        log.report.rejects = sorted(kept, key=lambda r: r.line)
    return log
