"""The deduplication rule: one row per key, the latest event (or the first line) wins."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa

from movierec.data.keys import key_codes, strictly_increasing_pairs
from movierec.data.report import Reject
from movierec.data.schema import CANONICAL, KEYS, TableKind

DedupKeep = Literal["latest", "first"]


def describe_dedup(kind: TableKind, keep: DedupKeep) -> str:
    """Return the dedup rule in words, as written into reports."""
    key = ", ".join(KEYS[kind])
    if keep == "first":
        return f"one row per ({key}): the first line wins"
    if "timestamp" in CANONICAL[kind].names and "timestamp" not in KEYS[kind]:
        return f"one row per ({key}): the latest timestamp wins, ties go to the later line"
    return f"one row per ({key}): the later line wins"


def dedup_order(
    keys: np.ndarray, timestamps: np.ndarray | None, order: np.ndarray, keep: DedupKeep
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decide which rows survive deduplication: the one shared rule of movierec.

    Args:
        keys: int64 key code per row.
        timestamps: Event time per row, or ``None`` when the table has none.
        order: Arrival order per row (line number or sequence); larger is later.
        keep: ``"latest"`` or ``"first"``.

    Returns:
        ``(kept, dropped, winner_of_dropped)``: indices of kept rows (sorted), of dropped rows,
        and for each dropped row the index of the row that superseded it.
    """
    n = keys.shape[0]
    if n < 2 or bool(np.all(keys[1:] > keys[:-1])):  # sorted and unique: the common case
        return np.arange(n), np.zeros(0, np.int64), np.zeros(0, np.int64)
    if keep == "first":
        idx = np.lexsort((order, keys))
        first_of_group = np.ones(n, dtype=bool)
        first_of_group[1:] = keys[idx][1:] != keys[idx][:-1]
        winner_pos = np.maximum.accumulate(np.where(first_of_group, np.arange(n), 0))
    else:
        sort_keys = (order, keys) if timestamps is None else (order, timestamps, keys)
        idx = np.lexsort(sort_keys)
        last_of_group = np.ones(n, dtype=bool)
        last_of_group[:-1] = keys[idx][1:] != keys[idx][:-1]
        # the winner of each group is its last element: propagate its position backwards
        pos = np.where(last_of_group, np.arange(n), n)
        winner_pos = np.minimum.accumulate(pos[::-1])[::-1]
        first_of_group = last_of_group
    kept_mask = first_of_group
    kept = np.sort(idx[kept_mask])
    dropped = idx[~kept_mask]
    winners = idx[winner_pos[~kept_mask]]
    return kept, dropped, winners


def deduplicate(
    table: pa.Table, kind: TableKind, lines: np.ndarray, keep: DedupKeep, source: str
) -> tuple[pa.Table, list[Reject]]:
    """Apply :func:`dedup_order` to a canonical table; return it and the duplicate records."""
    if table.num_rows < 2:
        return table, []
    cols = KEYS[kind]
    if len(cols) == 2 and strictly_increasing_pairs(
        table[cols[0]].to_numpy(), table[cols[1]].to_numpy()
    ):
        return table, []
    keys = key_codes(table, cols)
    ts = None
    if "timestamp" in table.column_names and "timestamp" not in KEYS[kind]:
        ts = table["timestamp"].to_numpy()
    kept, dropped, winners = dedup_order(keys, ts, lines, keep)
    if dropped.size == 0:
        return table, []
    key_name = ",".join(KEYS[kind])
    dups = [
        Reject(
            source,
            int(lines[d]),
            key_name,
            f"duplicate key; superseded by line {int(lines[w])} ({keep} wins)",
            "",
        )
        for d, w in zip(dropped, winners, strict=True)
    ]
    dups.sort(key=lambda r: r.line)
    return table.take(kept), dups
