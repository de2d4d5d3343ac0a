"""Feedback is data: durable events (SQLite WAL by default, PostgreSQL when configured).

A feedback event is committed (fsynced: ``synchronous=FULL``) before the API answers 2xx, so
an acknowledged event survives a crash. The store also keeps an in-memory overlay per user
(liked, disliked, rated, watched movies) that the engine reads on every request, and
:func:`merge_feedback` folds the events into a ratings table for the next training run.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from movierec.data.segments import EventSegments, distinct, feedback_events
from movierec.data.sqlutil import add_missing_column, insert_ignoring_known
from movierec.data.user_feedback import SAVE_VALUE, Signal, UserFeedback


class FeedbackStore:
    """Feedback table plus the per-user overlay; thread-safe.

    Events written by other processes (the stream consumer) reach this process's overlay
    through :meth:`refresh`. ``overlay=False`` skips loading the overlay (writers only).
    """

    #: Seconds :meth:`refresh` looks back before its last poll (commits may land late).
    REFRESH_WINDOW = 10.0

    def __init__(self, url: str, table: str = "movierec_feedback", overlay: bool = True) -> None:
        self.url = url
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":

            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):  # type: ignore[no-untyped-def]
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA busy_timeout=5000")
                cur.close()

        self.meta = sa.MetaData()
        self.table = sa.Table(
            table,
            self.meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("user_id", sa.BigInteger, nullable=False, index=True),
            sa.Column("movie_id", sa.BigInteger, nullable=False),
            sa.Column("signal", sa.String(16), nullable=False),
            sa.Column("value", sa.Float),
            sa.Column("source", sa.String(64)),
            sa.Column("timestamp", sa.Float, nullable=False),
            sa.Column("received", sa.Float, nullable=False, index=True),
            # identity of a streamed event: a replay of it is ignored (NULL for API feedback)
            sa.Column("event_key", sa.String(128), unique=True),
        )
        self.meta.create_all(self.engine)
        add_missing_column(self.engine, self.table, "event_key")
        # streamed events, one row per batch; a feedback table of another name has its own
        self.segments = EventSegments(
            self.engine, "movierec" if table == "movierec_feedback" else table
        )
        self._lock = threading.Lock()
        self._users: dict[int, UserFeedback] = defaultdict(UserFeedback)
        self._applied: dict[int, float] = {}  # event id -> received, inside the refresh window
        self._applied_segments: dict[int, float] = {}  # the same for segments
        # identities of streamed events applied within the window: a line produced twice
        # (a producer's retry) moves the overlay once
        self._recent_keys: dict[object, float] = {}
        self._poll_from = time.time() - self.REFRESH_WINDOW
        if overlay:
            self._load()

    @classmethod
    def for_settings(
        cls, home: Path, database_url: str | None, overlay: bool = True
    ) -> FeedbackStore:
        """PostgreSQL when ``MOVIEREC_DATABASE_URL`` is a PostgreSQL URL, else SQLite (WAL)."""
        if database_url and database_url.startswith("postgresql"):
            return cls(database_url, overlay=overlay)
        home.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{home / 'feedback.db'}", overlay=overlay)

    def _load(self) -> None:
        with self.engine.connect() as con:
            rows = con.execute(sa.select(self.table).order_by(self.table.c.id)).all()
        for r in rows:
            self._users[int(r.user_id)].apply(int(r.movie_id), r.signal, r.value)
            if r.received >= self._poll_from:
                self._applied[int(r.id)] = float(r.received)
        seen: set[object] = {r.event_key for r in rows if r.event_key is not None}
        for seg in self.segments.read(kinds=("watches", "ratings")):
            self._apply_segment_events(distinct(feedback_events(seg), seen))
            if seg.received >= self._poll_from:
                self._applied_segments[seg.id] = seg.received

    def _apply_segment_events(self, events: list[dict[str, object]]) -> set[int]:
        users = set()
        for e in events:
            user = int(e["user_id"])  # type: ignore[call-overload]
            self._users[user].apply(int(e["movie_id"]), str(e["signal"]), e["value"])  # type: ignore[call-overload, arg-type]
            users.add(user)
        return users

    def refresh(self) -> set[int]:
        """Fold in events other processes stored since the last call; return their users.

        Reads the events received within :attr:`REFRESH_WINDOW` seconds before the last poll
        and applies those not applied yet (each exactly once), so an event committed late by
        a concurrent writer is still seen.
        """
        start = time.time()
        q = (
            sa.select(self.table)
            .where(self.table.c.received >= self._poll_from)
            .order_by(self.table.c.id)
        )
        with self.engine.connect() as con:
            rows = con.execute(q).all()
        segments = self.segments.read(self._poll_from, kinds=("watches", "ratings"))
        users: set[int] = set()
        with self._lock:
            for r in rows:
                if int(r.id) in self._applied:
                    continue
                self._applied[int(r.id)] = float(r.received)
                self._users[int(r.user_id)].apply(int(r.movie_id), r.signal, r.value)
                users.add(int(r.user_id))
            for seg in segments:
                if seg.id not in self._applied_segments:
                    self._applied_segments[seg.id] = seg.received
                    events = []
                    for e in distinct(feedback_events(seg)):
                        if e["event_key"] not in self._recent_keys:
                            self._recent_keys[e["event_key"]] = seg.received
                            events.append(e)
                    users |= self._apply_segment_events(events)
            self._poll_from = start - self.REFRESH_WINDOW
            self._applied = {i: t for i, t in self._applied.items() if t >= self._poll_from}
            self._recent_keys = {k: t for k, t in self._recent_keys.items() if t >= self._poll_from}
            self._applied_segments = {
                i: t for i, t in self._applied_segments.items() if t >= self._poll_from
            }
        return users

    def add_events(self, rows: list[dict[str, Any]]) -> int:
        """Store streamed events, each once: rows whose ``event_key`` is stored are skipped.

        One transaction (durable when it returns). Rows need ``user_id, movie_id, signal,
        value, source, timestamp, event_key``; the overlay is updated by :meth:`refresh`.

        Returns:
            How many rows were new.
        """
        if not rows:
            return 0
        now = time.time()
        payload = [r | {"received": now} for r in rows]
        return insert_ignoring_known(self.engine, self.table, payload)

    def add(
        self,
        user_id: int,
        movie_id: int,
        signal: Signal,
        value: float | None,
        source: str | None,
        timestamp: float | None,
    ) -> int:
        """Commit one event durably, then update the overlay; return its id."""
        now = time.time()
        row = {
            "user_id": user_id,
            "movie_id": movie_id,
            "signal": signal,
            "value": value,
            "source": source,
            "timestamp": timestamp or now,
            "received": now,
        }
        with self._lock:
            with self.engine.begin() as con:
                new_id = con.execute(sa.insert(self.table).values(**row)).inserted_primary_key
            self._users[user_id].apply(movie_id, signal, value)
            if new_id:
                self._applied[int(new_id[0])] = now
        return int(new_id[0]) if new_id else -1

    def user(self, user_id: int) -> UserFeedback | None:
        """A copy of a user's overlay, or ``None`` when they gave no feedback.

        A copy, taken under the lock: events applied while a request reads it (the stream's
        consumer, another request's ``POST /feedback``) never change it under the reader.
        """
        with self._lock:
            fb = self._users.get(user_id)
            return None if fb is None else fb.copy()

    def count(self) -> int:
        """Events stored (a streamed event produced twice counts once).

        Vectorised over the segments (cheap enough to poll): the row table's count plus the
        distinct identities of the segments' events that no row carries.
        """
        t = self.table
        with self.engine.connect() as con:
            n = self._row_count(con)
            keyed = {
                str(k)
                for (k,) in con.execute(sa.select(t.c.event_key).where(t.c.event_key.isnot(None)))
            }
        segments = self.segments.read(kinds=("watches", "ratings"))
        for kind, column, tag in (("watches", "minute", "w"), ("ratings", "timestamp", "r")):
            tables = [seg.tables[kind] for seg in segments if kind in seg.tables]
            if not tables:
                continue
            both = pa.concat_tables(tables)
            ids = np.unique(
                np.stack(
                    [both[c].to_numpy().astype(np.int64) for c in ("user_id", "movie_id", column)],
                    axis=1,
                ),
                axis=0,
            )
            n += len(ids)
            if keyed:  # rows a consumer of an older version stored, keyed the same way
                n -= sum(f"{tag}:{u}:{m}:{x}" in keyed for u, m, x in ids.tolist())
        return n

    def _row_count(self, con: sa.Connection) -> int:
        return int(con.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one())

    def stored_events(self) -> int:
        """Events physically stored: rows plus stream segments' events, without dedup."""
        with self.engine.connect() as con:
            n = self._row_count(con)
        for seg in self.segments.read(kinds=("watches", "ratings")):
            n += sum(t.num_rows for t in seg.tables.values())
        return n

    def since(
        self, received_after: float = 0.0, signal: str | None = None
    ) -> list[dict[str, object]]:
        """Events received after a time, oldest first, of one signal if given.

        Events of the row table (API feedback, ``add_events``) and of stream segments, each
        event identity once (for retraining with feedback, online evaluation).
        """
        q = sa.select(self.table).where(self.table.c.received > received_after)
        if signal is not None:
            q = q.where(self.table.c.signal == signal)
        q = q.order_by(self.table.c.id)
        with self.engine.connect() as con:
            rows: list[dict[str, object]] = [dict(r._mapping) for r in con.execute(q)]
        streamed = [
            e
            for seg in self.segments.read(received_after, kinds=("watches", "ratings"))
            if seg.received > received_after
            for e in feedback_events(seg)
            if signal is None or e["signal"] == signal
        ]
        if not streamed:
            return rows
        events = sorted(rows + streamed, key=lambda e: float(e["received"]))  # type: ignore[arg-type]
        return distinct(events)

    def drop(self) -> None:
        """Drop the feedback and segment tables (tests)."""
        self.meta.drop_all(self.engine)
        self.segments.drop()

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()


#: Value of a liked movie the user had not rated; a like on a rated movie adds LIKE_BONUS.
LIKE_VALUE = 5.0
LIKE_BONUS = 1.0
#: Value of a watched movie the user had not rated.
WATCH_VALUE = 3.0


def merge_feedback(
    ratings: pa.Table, events: list[dict[str, Any]]
) -> tuple[pa.Table, dict[str, int]]:
    """Apply feedback events (in arrival order) to the ratings table.

    Likes add weight (``+LIKE_BONUS`` up to 5 on a rated movie, ``LIKE_VALUE`` otherwise),
    dislikes remove the pair, ratings set the value, watches and saves add the pair when
    missing (``WATCH_VALUE``, ``SAVE_VALUE``). The pair's timestamp becomes the event's.

    Returns:
        The new table and counts: events, pairs added, updated and removed.
    """
    counts = {"events": len(events), "added": 0, "updated": 0, "removed": 0}
    if not events:
        return ratings, counts
    users = ratings["user_id"].to_numpy().astype(np.int64)
    movies = ratings["movie_id"].to_numpy().astype(np.int64)
    touched = {(int(e["user_id"]), int(e["movie_id"])) for e in events}
    candidates = np.flatnonzero(np.isin(users, np.array([u for u, _ in touched], np.int64)))
    vals, tss = ratings["rating"].to_numpy(), ratings["timestamp"].to_numpy()
    base: dict[tuple[int, int], tuple[float, int]] = {}
    drop = np.zeros(users.size, bool)  # rows replaced by the feedback's final state
    for r in candidates.tolist():
        key = (int(users[r]), int(movies[r]))
        if key in touched:
            base[key] = (float(vals[r]), int(tss[r]))
            drop[r] = True
    state: dict[tuple[int, int], tuple[float, int] | None] = dict(base)
    for e in events:
        key = (int(e["user_id"]), int(e["movie_id"]))
        cur = state.get(key)
        ts = int(float(e.get("timestamp") or e.get("received") or 0))
        signal, value = str(e["signal"]), e.get("value")
        if signal == "dislike":
            state[key] = None
        elif signal == "like":
            state[key] = (min(5.0, cur[0] + LIKE_BONUS) if cur else LIKE_VALUE, ts)
        elif signal == "rating" and value is not None:
            state[key] = (float(value), ts)
        elif signal == "watch" and cur is None:
            state[key] = (WATCH_VALUE, ts)
        elif signal == "save" and cur is None:
            state[key] = (SAVE_VALUE, ts)
    kept = ratings.filter(pa.array(~drop))
    new = [(k, v) for k, v in state.items() if v is not None]
    for k, v in state.items():
        if k in base and v is None:
            counts["removed"] += 1
        elif k in base and v is not None and v != base[k]:
            counts["updated"] += 1
        elif k not in base and v is not None:
            counts["added"] += 1
    schema = ratings.schema
    extra = pa.table(
        {
            "user_id": pa.array([k[0] for k, _ in new], schema.field("user_id").type),
            "movie_id": pa.array([k[1] for k, _ in new], schema.field("movie_id").type),
            "rating": pa.array([v[0] for _, v in new], schema.field("rating").type),
            "timestamp": pa.array([v[1] for _, v in new], schema.field("timestamp").type),
        }
    ).select(schema.names)
    return pa.concat_tables([kept, extra.cast(schema)]), counts
