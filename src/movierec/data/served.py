"""Served recommendations: what the service answered, as logged in the event stream.

One row per recommendation-request line (time, user, server, status, the movie ids in
order, latency), stored once per event identity next to the feedback table (same database).
Online evaluation and experiments read it.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from movierec.data.segments import EventSegments
from movierec.data.sqlutil import insert_ignoring_known


class ServedLog:
    """The ``movierec_served`` table on an engine (SQLite WAL or PostgreSQL)."""

    def __init__(
        self,
        engine: sa.Engine,
        table: str = "movierec_served",
        segments: EventSegments | None = None,
    ) -> None:
        self.engine = engine
        self.meta = sa.MetaData()
        self.table = sa.Table(
            table,
            self.meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("event_key", sa.String(128), unique=True, nullable=False),
            sa.Column("timestamp", sa.BigInteger, nullable=False, index=True),
            sa.Column("user_id", sa.BigInteger, nullable=False, index=True),
            sa.Column("server", sa.String(128), nullable=False),
            sa.Column("status", sa.Integer, nullable=False),
            sa.Column("items", sa.Text, nullable=False),
            sa.Column("latency_ms", sa.Float, nullable=False),
            sa.Column("variant", sa.String(64)),
            sa.Column("received", sa.Float, nullable=False),
        )
        self.meta.create_all(engine)
        # lists the stream consumer stored (the default feedback store's segments)
        self.segments = segments or EventSegments(engine)

    def add_many(self, rows: list[dict[str, Any]]) -> int:
        """Store served lists, each once (by ``event_key``); return how many were new."""
        now = time.time()
        return insert_ignoring_known(self.engine, self.table, [r | {"received": now} for r in rows])

    def count(self) -> int:
        """Served lists stored (rows and stream segments)."""
        with self.engine.connect() as con:
            n = int(con.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one())
        return n + sum(seg.tables["served"].num_rows for seg in self._segments())

    def rows(self, since: int = 0) -> list[dict[str, Any]]:
        """Served lists with ``timestamp >= since``, in arrival order (``items`` as a list)."""
        q = sa.select(self.table).where(self.table.c.timestamp >= since).order_by(self.table.c.id)
        with self.engine.connect() as con:
            out = [dict(r._mapping) for r in con.execute(q)]
        for seg in self._segments():
            t = seg.tables["served"]
            for rec in t.to_pylist():
                if rec["timestamp"] < since:
                    continue
                part, offset = rec.pop("partition"), rec.pop("offset")
                rec |= {
                    "id": None,
                    "event_key": f"q:{seg.topic}:{part}:{offset}",
                    "variant": None,
                    "received": seg.received,
                }
                out.append(rec)
        out.sort(key=lambda r: float(r["received"]))
        for r in out:
            r["items"] = [int(x) for x in str(r["items"]).split(",") if x.strip()]
        return out

    def _segments(self) -> list[Any]:
        return [s for s in self.segments.read(kinds=("served",)) if "served" in s.tables]
