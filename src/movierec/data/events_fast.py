"""The vectorised path of event-log parsing: the plain numeric lines, parsed by polars at once.

A line takes this path only when it is exactly ``YYYY-MM-DDTHH:MM:SS,<user>,GET /data/m/<movie>/
<minute>.mpg`` or ``...,GET /rate/<movie>=<d or d.d>`` with a valid date in the plausible range,
ids in (0, 2³¹) and a rating in [0.5, 5] in half steps: exactly the lines the line-by-line
parser accepts with the same values. Every other line (title slugs, requests, spaces, errors)
goes through :func:`movierec.data.events.parse_lines`' exact path, which names the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from movierec.data.schema import MIN_TIMESTAMP

_T = r"(?P<t>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})"
_U = r"(?P<u>\d{1,10})"
_WATCH = rf"^{_T},{_U},GET /data/m/(?P<m>\d{{1,10}})/(?P<x>\d{{1,9}})\.mpg$"
_RATE = rf"^{_T},{_U},GET /rate/(?P<m>\d{{1,10}})=(?P<x>\d(?:\.\d)?)$"
_MAX_ID = 2**31


@dataclass(frozen=True)
class FastRows:
    """Rows of the lines the vectorised path accepted (``line`` is 1-based)."""

    accepted: np.ndarray  # bool per input line
    watches: dict[str, np.ndarray]  # user_id, movie_id, minute, timestamp, line
    ratings: dict[str, np.ndarray]  # user_id, movie_id, rating, timestamp, line


def _match(lines: pl.Series, pattern: str, upper: int) -> pl.DataFrame:
    parts = lines.str.extract_groups(pattern).struct.unnest()
    ts = parts["t"].str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S", strict=False)
    return pl.DataFrame(
        {
            "user_id": parts["u"].cast(pl.Int64, strict=False),
            "movie_id": parts["m"].cast(pl.Int64, strict=False),
            "x": parts["x"].cast(pl.Float64, strict=False),
            "timestamp": ts.dt.epoch("s"),
            "line": pl.int_range(1, len(lines) + 1, eager=True),
        }
    ).with_columns(
        ok=pl.col("timestamp").is_between(MIN_TIMESTAMP, upper)
        & pl.col("user_id").is_between(1, _MAX_ID - 1)
        & pl.col("movie_id").is_between(1, _MAX_ID - 1)
        & pl.col("x").is_not_null()
    )


def fast_rows(lines: list[str], upper: int) -> FastRows:
    """Parse the lines the vectorised path can take; mark which ones it took."""
    if not lines:
        empty = {k: np.zeros(0, np.int64) for k in ("user_id", "movie_id", "timestamp", "line")}
        return FastRows(
            np.zeros(0, bool),
            empty | {"minute": np.zeros(0, np.int64)},
            empty | {"rating": np.zeros(0, np.float64)},
        )
    series = pl.Series("line", lines, dtype=pl.Utf8).str.strip_chars_end("\r\n")
    w = _match(series, _WATCH, upper)
    r = _match(series, _RATE, upper)
    r = r.with_columns(
        ok=pl.col("ok") & pl.col("x").is_between(0.5, 5.0) & ((pl.col("x") * 2) % 1 == 0)
    )
    w_ok = w["ok"].fill_null(False).to_numpy()
    r_ok = r["ok"].fill_null(False).to_numpy()
    wk, rk = w.filter(pl.Series(w_ok)), r.filter(pl.Series(r_ok))
    return FastRows(
        w_ok | r_ok,
        {
            "user_id": wk["user_id"].to_numpy(),
            "movie_id": wk["movie_id"].to_numpy(),
            "minute": wk["x"].to_numpy().astype(np.int64),
            "timestamp": wk["timestamp"].to_numpy(),
            "line": wk["line"].to_numpy(),
        },
        {
            "user_id": rk["user_id"].to_numpy(),
            "movie_id": rk["movie_id"].to_numpy(),
            "rating": rk["x"].to_numpy(),
            "timestamp": rk["timestamp"].to_numpy(),
            "line": rk["line"].to_numpy(),
        },
    )
