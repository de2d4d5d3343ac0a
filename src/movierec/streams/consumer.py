"""The at-least-once stream consumer: parse, validate, store durably, then commit offsets.

Each batch of messages is parsed with the event-log rules (:func:`movierec.data.events.
parse_lines`, vectorised); a line that fails becomes a reject with its partition, offset and
reason. The good events are stored as one segment (:mod:`movierec.data.segments`): one
transaction writes the batch's watch minutes, ratings and served lists together with the
next offset of each partition, so a replayed message (after a crash between the write and
the commit, a rebalance, or a second group) is recognised by its offset and stores nothing.
Readers count each event identity once (a watch is ``(user, movie, minute)``, so watch depth
counts distinct minutes; a rating ``(user, movie, time)``; a served list its message). Only
then are the batch's offsets committed, synchronously. Offsets of revoked partitions are
committed on rebalance.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from movierec.data.events import parse_lines
from movierec.data.feedback import FeedbackStore
from movierec.data.report import Reject
from movierec.data.segments import OffsetConflictError
from movierec.streams.batch import parse_batch, served_table
from movierec.streams.metrics import StreamMetrics

logger = logging.getLogger(__name__)


class RejectRateExceededError(RuntimeError):
    """More events were rejected than ``max_reject_rate`` allows (the batch is not committed)."""


@dataclass
class ConsumerStats:
    """Running totals of a consumer.

    ``feedback_new`` and ``served_new`` count events stored by this consumer (messages not
    stored before: ``replayed`` ones are skipped); a watch minute or rating produced twice
    is stored twice and counted once by readers.
    """

    events: int = 0
    rejects: int = 0
    duplicates: int = 0
    replayed: int = 0
    feedback_new: int = 0
    served_new: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    #: ``time.monotonic()`` when the last batch was stored and committed.
    finished: float = 0.0
    lag: dict[int, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        """Events per second since the start."""
        return self.events / max(time.monotonic() - self.started, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "events": self.events,
            "rejects": self.rejects,
            "duplicates_in_batch": self.duplicates,
            "replayed": self.replayed,
            "feedback_new": self.feedback_new,
            "served_new": self.served_new,
            "batches": self.batches,
            "events_per_s": self.events_per_s,
            "lag": {str(k): v for k, v in self.lag.items()},
        }


#: Messages per batch: per-batch costs (the stored offsets, the segment's fsync, the commit)
#: spread over more events; measured 10k -> 50k: +25-40% events/s (benchmarks/bench_stream.py).
BATCH = 50_000


@dataclass(frozen=True)
class _Stored:
    """A batch stored durably, waiting for its offsets to be committed."""

    n: int
    last: dict[int, int]  # partition -> last offset in the batch
    rejects: int = 0
    duplicates: int = 0
    replayed: int = 0
    feedback_new: int = 0
    served_new: int = 0


def _fields(messages: list[Any]) -> tuple[list[bytes | None], np.ndarray, np.ndarray]:
    """Values, partitions and offsets of a batch of messages."""
    values = [m.value() for m in messages]
    parts = np.array([m.partition() for m in messages], np.int32)
    offsets = np.array([m.offset() for m in messages], np.int64)
    return values, parts, offsets


def consumer_config(bootstrap: str, group: str) -> dict[str, Any]:
    """Librdkafka settings: manual commits, short fetch waits (see STYLE's stream anchors)."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "fetch.wait.max.ms": 10,
        "fetch.queue.backoff.ms": 10,
    }


class StreamConsumer:
    """A consumer-group member that stores events before it commits their offsets."""

    #: Seconds an idle-exiting consumer waits for its first assignment (a killed member's
    #: partitions move when its session expires: about 10 s on Tansu).
    JOIN_WAIT_S = 30.0

    def __init__(
        self,
        store: FeedbackStore,
        *,
        bootstrap: str,
        topic: str,
        group: str,
        slugs: dict[str, int] | None = None,
        batch_size: int = BATCH,
        max_reject_rate: float | None = None,
        reject_file: Path | None = None,
        metrics: StreamMetrics | None = None,
    ) -> None:
        from confluent_kafka import Consumer

        self.store = store
        self.segments = store.segments
        self.topic = topic
        self.slugs = slugs
        self.batch_size = batch_size
        self.max_reject_rate = max_reject_rate
        self.reject_file = reject_file
        self.metrics = metrics
        self.stats = ConsumerStats()
        self._next: dict[int, int] = {}  # partition -> next offset to commit (processed)
        self._assigned: set[int] = set()
        self._lag_at = 0.0
        self._assigned_at: float | None = None
        # the first parse imports what pyarrow loads lazily (pandas, ~0.3 s): pay it now,
        # not in the first batch's latency
        parse_lines(["1970-01-02T00:00:00,1,GET /rate/1=1"], source="warm-up", now=86_400)
        # consume() of the next batch overlaps parse + store of this one (librdkafka, polars
        # and SQLite's fsync release the GIL); one batch in flight keeps the order; every
        # Kafka call (consume, commit) stays on the consuming thread
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="movierec-consumer")
        self._pending: Future[_Stored] | None = None
        self.consumer = Consumer(consumer_config(bootstrap, group))
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    # --------------------------------------------------------------- rebalance
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self._assigned |= {p.partition for p in partitions}
        self._assigned_at = time.monotonic()
        logger.info("assigned partitions %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        pending = self._pending  # the batch in flight is stored and committed (or failed,
        if pending is not None:  # raised by run) before letting go
            futures_wait([pending])
            if pending.exception() is None:
                self._pending = None
                self._finish(pending.result())
        revoked = [p.partition for p in partitions]
        self._commit([p for p in revoked if p in self._next])
        self._assigned -= set(revoked)
        logger.info("revoked partitions %s", sorted(revoked))

    def _commit(self, partitions: list[int]) -> None:
        from confluent_kafka import TopicPartition

        if not partitions:
            return
        offsets = [TopicPartition(self.topic, p, self._next[p]) for p in partitions]
        self.consumer.commit(offsets=offsets, asynchronous=False)

    # ------------------------------------------------------------------ batches
    def process(self, messages: list[Any]) -> int:
        """Parse, validate and durably store one batch, then commit it; return its events.

        Raises:
            RejectRateExceededError: The running reject rate is above the limit (nothing of the
                batch is stored or committed).
        """
        return self._finish(self._store(*_fields(messages)))

    def _store(self, values: list[bytes | None], parts: np.ndarray, offsets: np.ndarray) -> _Stored:
        """Parse, validate and durably store one batch (no Kafka call: any thread may run it)."""
        n = len(values)
        if n == 0:
            return _Stored(0, {})
        last = {int(p): int(offsets[parts == p].max()) for p in np.unique(parts)}
        for attempt in range(5):
            seen = self.segments.next_offsets(self.topic)
            floor = np.array([seen.get(int(p), 0) for p in range(int(parts.max()) + 1)])
            fresh = offsets >= floor[parts]
            log, rejects = parse_batch(values, parts, offsets, fresh, self.topic, self.slugs)
            total, bad = self.stats.events + n, self.stats.rejects + len(rejects)
            limit = self.max_reject_rate
            if limit is not None and total >= 100 and bad > limit * total:
                self._write_rejects(rejects)
                raise RejectRateExceededError(
                    f"{bad} of {total} events rejected ({bad / total:.1%}) > "
                    f"max reject rate {limit:.1%}; offsets not committed"
                )
            tables = {
                "watches": log.watches,
                "ratings": log.ratings,
                "served": served_table(log, parts, offsets),
            }
            advance = {p: o + 1 for p, o in last.items() if o + 1 > seen.get(p, 0)}
            try:
                if advance:
                    self.segments.append(self.topic, seen, advance, tables, int(fresh.sum()))
                break
            except OffsetConflictError as exc:  # another member stored some of it first
                logger.info("offsets moved under us (%s); filtering again (%d)", exc, attempt)
        else:
            raise RuntimeError("could not store the batch: offsets kept moving")
        self._write_rejects(rejects)
        return _Stored(
            n,
            last,
            rejects=len(rejects),
            duplicates=log.report.duplicate_rows,
            replayed=int(n - fresh.sum()),
            feedback_new=log.watches.num_rows + log.ratings.num_rows,
            served_new=tables["served"].num_rows,
        )

    def _finish(self, done: _Stored) -> int:
        """Commit a stored batch's offsets and count it (on the consuming thread only).

        librdkafka serialises calls on a consumer: a commit from another thread waits until
        the consuming thread is between two ``consume`` calls, which an idle loop hardly
        ever is (measured: a commit from a second thread did not get through in 10 s).
        """
        if done.n == 0:
            return 0
        for p, offset in done.last.items():
            self._next[p] = max(self._next.get(p, 0), offset + 1)
        self._commit(sorted(done.last))
        s = self.stats
        s.events, s.rejects, s.batches = s.events + done.n, s.rejects + done.rejects, s.batches + 1
        s.duplicates += done.duplicates
        s.replayed += done.replayed
        s.feedback_new += done.feedback_new
        s.served_new += done.served_new
        s.finished = time.monotonic()
        if self.metrics is not None:
            self.metrics.batch(done.n, done.rejects, done.feedback_new, done.served_new)
        return done.n

    def _write_rejects(self, rejects: list[Reject]) -> None:
        if not rejects:
            return
        for r in rejects[:5]:
            logger.warning("rejected %s offset %d: %s (%s)", r.source, r.line, r.reason, r.field)
        if self.reject_file is None:
            return
        self.reject_file.parent.mkdir(parents=True, exist_ok=True)
        with self.reject_file.open("a", encoding="utf-8") as f:
            for r in rejects:
                part = r.source.rsplit("[", 1)[-1].rstrip("]")
                rec = {
                    "topic": self.topic,
                    "partition": int(part) if part.isdigit() else None,
                    "offset": r.line,
                    "field": r.field,
                    "reason": r.reason,
                    "text": r.raw[:200],
                }
                f.write(json.dumps(rec) + "\n")

    def update_lag(self) -> dict[int, int]:
        """Messages behind the high watermark per assigned partition (approximate on Tansu)."""
        from confluent_kafka import TopicPartition

        lag: dict[int, int] = {}
        for p in sorted(self._assigned):
            tp = TopicPartition(self.topic, p)
            try:
                # the watermark the last fetch response carried: no broker round trip that
                # would stall the consume loop (and event freshness)
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except Exception:
                continue
            pos = self._next.get(p, 0)
            lag[p] = max(0, int(high) - pos)
        self.stats.lag = lag
        if self.metrics is not None:
            self.metrics.set_lag(lag, self.stats.events_per_s)
        return lag

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        max_events: int | None = None,
        idle_exit_s: float | None = None,
        on_batch: Callable[[ConsumerStats], None] | None = None,
    ) -> ConsumerStats:
        """Consume until told to stop; then commit and leave the group cleanly.

        Stops when ``stop`` is set, ``max_events`` were processed, or nothing arrived for
        ``idle_exit_s`` seconds.
        """
        start = time.monotonic()
        idle_since = start
        handed = 0  # events handed to the worker
        try:
            while stop is None or not stop.is_set():
                msgs = self.consumer.consume(self.batch_size, timeout=0.1)
                good = [m for m in msgs if m.error() is None]
                if len(good) < len(msgs):
                    for m in msgs:
                        if m.error() is not None:
                            logger.warning("consumer error: %s", m.error())
                now = time.monotonic()
                if self._pending is not None and (good or self._pending.done()):
                    self._wait()  # one batch in flight: stored and committed in order
                if good:  # the loop reads the messages' fields, the worker does the rest
                    self._pending = self._worker.submit(self._store, *_fields(good))
                    handed += len(good)
                    idle_since = now
                    if on_batch is not None:
                        on_batch(self.stats)
                if now - self._lag_at > 2.0:
                    self._lag_at = now
                    self.update_lag()
                if max_events is not None and handed >= max_events:
                    break
                if idle_exit_s is not None and self._idle_over(now, start, idle_since, idle_exit_s):
                    break
            self._wait()
        finally:
            self.close()
        return self.stats

    def _wait(self) -> None:
        """Wait for the batch in flight and commit it; its error (the reject rate) is raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._finish(pending.result())

    def _idle_over(self, now: float, start: float, idle_since: float, limit: float) -> bool:
        """Idle for ``limit`` seconds since partitions were assigned (or the last batch).

        Before any assignment (a group still waiting for a dead member's session to expire)
        the consumer waits at least :attr:`JOIN_WAIT_S`.
        """
        if self._assigned_at is None:
            return now - start > max(limit, self.JOIN_WAIT_S)
        return now - max(idle_since, self._assigned_at) > limit

    def close(self) -> None:
        """Finish the batch in flight, commit what was processed and leave the group."""
        try:
            self._wait()
        except Exception as exc:  # already raised to run()'s caller, or raised now
            logger.warning("batch in flight failed: %s", exc)
        self._worker.shutdown()
        try:
            self._commit(sorted(p for p in self._assigned if p in self._next))
        except Exception as exc:
            logger.warning("final commit failed: %s", exc)
        self.consumer.close()
