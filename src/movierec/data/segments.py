"""Event segments: a consumed stream batch stored as one columnar row, with its offsets.

The stream consumer's durable write. One transaction stores a batch's parsed events (watch
minutes, ratings, served lists; each an Arrow IPC stream) as one row and
advances the stored next offset of every partition the batch covers. A message below the
stored offset of its partition has been stored before: a replay (a crash between the write
and the Kafka commit, a rebalance, a second group) stores nothing — writes are idempotent
by message identity (topic, partition, offset). Two writers racing on a partition cannot both
win: the offset update is conditional on the value each read, and the loser's transaction
rolls back.

Readers (:class:`movierec.data.feedback.FeedbackStore`, :class:`movierec.data.served.
ServedLog`) dedup event identities across segments: a watch is ``(user, movie, minute)``, a
rating ``(user, movie, time)``, so a line produced twice counts once.

Why columnar: a row per event costs a B-tree insert per index per event (about 6 µs per
event through SQLite); a segment costs one row per batch, so the consumer keeps up with the
broker (``benchmarks/bench_stream.py``).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.ipc as ipc
import sqlalchemy as sa

#: Kinds of events a segment holds, each an Arrow table (or nothing).
KINDS = ("watches", "ratings", "served")


class OffsetConflictError(RuntimeError):
    """Another writer advanced a partition's offset first (the batch was not stored)."""


@dataclass(frozen=True)
class Segment:
    """One stored batch."""

    id: int
    topic: str
    received: float
    tables: dict[str, pa.Table]


def _dump(table: pa.Table | None) -> bytes | None:
    if table is None or table.num_rows == 0:
        return None
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _load(blob: bytes | None) -> pa.Table | None:
    if blob is None:
        return None
    return ipc.open_stream(pa.py_buffer(blob)).read_all()


class EventSegments:
    """The ``<namespace>_segments`` and ``<namespace>_stream_offsets`` tables on an engine."""

    def __init__(self, engine: sa.Engine, namespace: str = "movierec") -> None:
        self.engine = engine
        self.meta = sa.MetaData()
        blob = sa.LargeBinary(length=2**32 - 1)
        self.table = sa.Table(
            f"{namespace}_segments",
            self.meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("topic", sa.String(255), nullable=False),
            sa.Column("received", sa.Float, nullable=False, index=True),
            sa.Column("events", sa.Integer, nullable=False),
            *(sa.Column(kind, blob) for kind in KINDS),
        )
        self.offsets = sa.Table(
            f"{namespace}_stream_offsets",
            self.meta,
            sa.Column("topic", sa.String(255), primary_key=True),
            sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("next_offset", sa.BigInteger, nullable=False),
        )
        self.meta.create_all(engine)

    def next_offsets(self, topic: str) -> dict[int, int]:
        """The next offset not yet stored, per partition of ``topic`` (absent: none stored)."""
        o = self.offsets
        q = sa.select(o.c.partition, o.c.next_offset).where(o.c.topic == topic)
        with self.engine.connect() as con:
            return {int(p): int(n) for p, n in con.execute(q)}

    def append(
        self,
        topic: str,
        seen: dict[int, int],
        advance: dict[int, int],
        tables: dict[str, pa.Table],
        events: int,
    ) -> None:
        """Store one batch and advance its partitions' offsets, atomically.

        Args:
            topic: The topic consumed.
            seen: The stored next offsets the batch was filtered with (from
                :meth:`next_offsets`; a partition absent had none).
            advance: The new next offset of each partition in the batch.
            tables: Events by kind (see :data:`KINDS`).
            events: Messages the batch covers (stored, rejected or duplicate).

        Raises:
            OffsetConflictError: Another writer stored part of the batch first; nothing was
                stored (filter again with fresh offsets and retry).
        """
        o = self.offsets
        try:
            with self.engine.begin() as con:
                for part, nxt in advance.items():
                    where = (o.c.topic == topic) & (o.c.partition == part)
                    if part in seen:
                        res = con.execute(
                            sa.update(o)
                            .where(where & (o.c.next_offset == seen[part]))
                            .values(next_offset=nxt)
                        )
                        if res.rowcount != 1:
                            raise OffsetConflictError(f"{topic}[{part}] advanced concurrently")
                    else:
                        con.execute(
                            sa.insert(o).values(topic=topic, partition=part, next_offset=nxt)
                        )
                row = {kind: _dump(tables.get(kind)) for kind in KINDS}
                if any(v is not None for v in row.values()):
                    con.execute(
                        sa.insert(self.table).values(
                            topic=topic, received=time.time(), events=events, **row
                        )
                    )
        except sa.exc.IntegrityError as exc:  # a concurrent first insert of the offset row
            raise OffsetConflictError(str(exc.orig)) from exc

    def read(
        self, received_from: float | None = None, kinds: tuple[str, ...] = KINDS
    ) -> list[Segment]:
        """Segments (oldest first), those received at or after ``received_from`` if given."""
        t = self.table
        q = sa.select(t.c.id, t.c.topic, t.c.received, *(t.c[k] for k in kinds)).order_by(t.c.id)
        if received_from is not None:
            q = q.where(t.c.received >= received_from)
        out = []
        with self.engine.connect() as con:
            for row in con.execute(q):
                tables = {k: tab for k in kinds if (tab := _load(row._mapping[k])) is not None}
                out.append(Segment(int(row.id), str(row.topic), float(row.received), tables))
        return out

    def drop(self) -> None:
        """Drop both tables (tests)."""
        self.meta.drop_all(self.engine)


def feedback_events(seg: Segment) -> list[dict[str, object]]:
    """A segment's ratings then watch minutes as feedback events (the row table's shape).

    Each carries its identity as ``event_key``: ``r:<user>:<movie>:<time>`` for a rating,
    ``w:<user>:<movie>:<minute>`` for a watch minute (value 1: watch depth counts minutes).
    """
    source = f"stream:{seg.topic}"
    out: list[dict[str, object]] = []
    r = seg.tables.get("ratings")
    if r is not None:
        for u, m, v, ts in zip(*(r[c].to_pylist() for c in RATING_COLUMNS), strict=True):
            out.append(_event(u, m, "rating", float(v), source, ts, seg, f"r:{u}:{m}:{ts}"))
    w = seg.tables.get("watches")
    if w is not None:
        for u, m, minute, ts in zip(*(w[c].to_pylist() for c in WATCH_COLUMNS), strict=True):
            out.append(_event(u, m, "watch", 1.0, source, ts, seg, f"w:{u}:{m}:{minute}"))
    return out


RATING_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")
WATCH_COLUMNS = ("user_id", "movie_id", "minute", "timestamp")


def _event(
    u: int, m: int, signal: str, v: float, source: str, ts: int, seg: Segment, key: str
) -> dict[str, object]:
    return {
        "id": None,
        "user_id": u,
        "movie_id": m,
        "signal": signal,
        "value": v,
        "source": source,
        "timestamp": float(ts),
        "received": seg.received,
        "event_key": key,
    }


def distinct(
    events: list[dict[str, object]], seen: set[object] | None = None
) -> list[dict[str, object]]:
    """Events whose ``event_key`` was not seen before (events without a key are all kept)."""
    seen = set() if seen is None else seen
    out = []
    for e in events:
        key = e.get("event_key")
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        out.append(e)
    return out
