"""One batch of stream messages as tables: parsed, validated, rejects located by offset."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from movierec.data.events import EventLog, parse_lines
from movierec.data.report import Reject

_CANONICAL_RESULT = r"^[0-9]+(?:, ?[0-9]+)*$"


def served_table(log: EventLog, parts: np.ndarray, offsets: np.ndarray) -> pa.Table:
    """Recommendation-request lines of a parsed batch as served lists.

    ``items`` holds the movie ids in order, comma-separated; ``partition`` and ``offset``
    (the message) are the list's identity: two requests with the same answer in the same
    second stay two lists. ``log.request_lines`` are positions (1-based) in ``parts`` and
    ``offsets``.
    """
    q = log.requests
    at = np.asarray(log.request_lines, dtype=np.int64) - 1
    result = q["result"]
    canonical = pc.match_substring_regex(result, _CANONICAL_RESULT)
    items = pc.replace_substring(result, " ", "")  # "1, 2, 3" -> "1,2,3"
    if not pc.all(canonical).as_py():  # the rest as written: trim each id, drop empty ones
        trimmed = [
            ",".join(x.strip() for x in str(r).split(",") if x.strip()) for r in result.to_pylist()
        ]
        items = pc.if_else(canonical, items, pa.array(trimmed, pa.string()))
    return pa.table(
        {
            "user_id": q["user_id"],
            "timestamp": q["timestamp"],
            "server": pa.array(log.servers, pa.string()),
            "status": q["status"],
            "items": items.cast(pa.string()),
            "latency_ms": q["latency_ms"],
            "partition": pa.array(parts[at], pa.int32()),
            "offset": pa.array(offsets[at], pa.int64()),
        }
    )


def parse_batch(
    values: list[bytes | None],
    parts: np.ndarray,
    offsets: np.ndarray,
    fresh: np.ndarray,
    topic: str,
    slugs: dict[str, int] | None,
) -> tuple[EventLog, list[Reject]]:
    """Parse the fresh messages of a batch; rejects carry their partition and offset.

    Args:
        values: Message values (``None``: a tombstone, parsed as an empty line).
        parts: Partition of each message.
        offsets: Offset of each message.
        fresh: Which messages to parse (the others were stored before).
        topic: Topic name, for reject records.
        slugs: Title slug -> movie id.

    Returns:
        The parsed events (``request_lines`` as 1-based positions in the whole batch) and
        the rejects (in-batch duplicate ratings are not rejects).
    """
    idx = np.flatnonzero(fresh)
    picked = values if idx.size == len(values) else [values[i] for i in idx.tolist()]
    raw = pl.Series("v", picked, dtype=pl.Binary).fill_null(b"")
    text = raw.cast(pl.Utf8, strict=False)
    undecodable = text.is_null().to_numpy()
    rejects = [
        Reject(f"{topic}[{parts[i]}]", int(offsets[i]), "*", "not utf-8", "")
        for i in idx[undecodable].tolist()
    ]
    if undecodable.any():
        idx, text = idx[~undecodable], text.filter(~pl.Series(undecodable))
    log = parse_lines(text, source=topic, slugs=slugs)
    rejects += [
        Reject(
            f"{topic}[{parts[idx[r.line - 1]]}]",
            int(offsets[idx[r.line - 1]]),
            r.field,
            r.reason,
            r.raw,
        )
        for r in log.report.rejects
        if not r.reason.startswith("duplicate")
    ]
    at = np.asarray(log.request_lines, dtype=np.int64) - 1
    log = EventLog(
        log.watches,
        log.ratings,
        log.requests,
        log.report,
        log.servers,
        tuple((idx[at] + 1).tolist()),  # request lines as positions in the whole batch
    )
    return log, rejects
