"""The vectorised path of event-log parsing: the plain numeric lines, parsed by polars at once.

A line takes this path only when it is exactly ``YYYY-MM-DDTHH:MM:SS,<user>,<body>`` with a
valid date in the plausible range, a user id in (0, 2³¹) and a canonical body:

- ``GET /data/m/<movie>/<minute>.mpg`` (a watch minute),
- ``GET /rate/<movie>=<d or d.d>`` with a rating in [0.5, 5] in half steps,
- ``recommendation request <server>, status <n>, result: <id>, <id>, ..., <latency> ms``
  (numeric ids, no stray spaces),

with numeric movie ids in (0, 2³¹): exactly lines the line-by-line parser accepts, with the
same values. Every other line (title slugs, spaces, errors) goes through
:func:`movierec.data.events.parse_lines`' exact path, which names the reason. The line is
split once into time, user and body; each body pattern runs only on the lines whose body
starts like it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from movierec.data.schema import MIN_TIMESTAMP

_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$"
_USER = r"^[0-9]{1,10}$"
_WATCH = r"^GET /data/m/(?P<m>[0-9]{1,10})/(?P<x>[0-9]{1,9})\.mpg$"
_RATE = r"^GET /rate/(?P<m>[0-9]{1,10})=(?P<x>[0-9](?:\.[0-9])?)$"
_RECO = (
    r"^recommendation request (?P<server>[^,\s]*), status (?P<status>[0-9]{1,9}), "
    r"result: (?P<result>[0-9]{1,10}(?:, ?[0-9]{1,10})*),\s*"
    r"(?P<latency>[0-9]{1,9}(?:\.[0-9]{1,9})?) ?ms$"
)
_MAX_ID = 2**31


@dataclass(frozen=True)
class FastRows:
    """Rows of the lines the vectorised path accepted (``line`` is 1-based, ascending)."""

    accepted: np.ndarray  # bool per input line
    watches: pa.Table  # user_id, movie_id, minute, timestamp, line
    ratings: pa.Table  # user_id, movie_id, rating, timestamp, line
    requests: pa.Table  # user_id, timestamp, status, result, latency_ms, server, line


def as_series(lines: list[str] | pl.Series) -> pl.Series:
    """Lines as a polars string series without their line ends."""
    s = lines if isinstance(lines, pl.Series) else pl.Series("line", lines, dtype=pl.Utf8)
    return s.str.strip_chars_end("\r\n")


def _body(base: pl.LazyFrame, prefix: str, pattern: str) -> pl.LazyFrame:
    """The rows whose body starts with ``prefix`` and matches ``pattern``, with its groups."""
    body = pl.col("body")
    return (
        base.filter(body.str.starts_with(prefix))
        .with_columns(body.str.extract_groups(pattern).alias("g"))
        .unnest("g")
    )


def fast_rows(series: pl.Series, upper: int) -> FastRows:
    """Parse the lines (without line ends: :func:`as_series`) the vectorised path can take.

    Marks which ones it took.

    One lazy plan, collected once for the three kinds of line: polars runs it without the
    GIL (a stream consumer fetches the next batch meanwhile) and shares the split of the
    lines between the three.
    """
    n = len(series)
    t, u = pl.col("field_0"), pl.col("field_1")
    ts = t.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S", strict=False).dt.epoch("s")
    user = u.cast(pl.Int64, strict=False)
    head_ok = (
        t.str.contains(_TIME)
        & ts.is_between(MIN_TIMESTAMP, upper)
        & u.str.contains(_USER)
        & user.is_between(1, _MAX_ID - 1)
    )
    base = (
        pl.LazyFrame([pl.int_range(1, n + 1, eager=True).alias("line"), series.alias("text")])
        .with_columns(pl.col("text").str.splitn(",", 3).alias("p"))
        .unnest("p")
        .filter(head_ok.fill_null(False))
        .select(
            "line", user.alias("user_id"), ts.alias("timestamp"), pl.col("field_2").alias("body")
        )
        .cache()
    )
    ok_id = pl.col("movie_id").is_between(1, _MAX_ID - 1)
    w = (
        _body(base, "GET /data/m/", _WATCH)
        .with_columns(
            movie_id=pl.col("m").cast(pl.Int64, strict=False),
            minute=pl.col("x").cast(pl.Int64, strict=False),
        )
        .filter(ok_id)
        .select("user_id", "movie_id", "minute", "timestamp", "line")
    )
    r = (
        _body(base, "GET /rate/", _RATE)
        .with_columns(
            movie_id=pl.col("m").cast(pl.Int64, strict=False),
            rating=pl.col("x").cast(pl.Float64, strict=False),
        )
        .filter(ok_id & pl.col("rating").is_between(0.5, 5.0) & ((pl.col("rating") * 2) % 1 == 0))
        .select("user_id", "movie_id", "rating", "timestamp", "line")
    )
    q = (
        _body(base, "recommendation request ", _RECO)
        .filter(pl.col("result").is_not_null())
        .with_columns(
            status=pl.col("status").cast(pl.Int64, strict=False),
            latency_ms=pl.col("latency").cast(pl.Float64, strict=False),
        )
        .select("user_id", "timestamp", "status", "result", "latency_ms", "server", "line")
    )
    frames = pl.collect_all([w, r, q])
    accepted = np.zeros(n, bool)
    for taken in frames:
        accepted[taken["line"].to_numpy() - 1] = True
    wt, rt, qt = (f.to_arrow() for f in frames)
    return FastRows(accepted, wt, rt, qt)
