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
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from movierec.data.events import EventLog, parse_lines
from movierec.data.feedback import FeedbackStore
from movierec.data.report import Reject
from movierec.data.segments import OffsetConflictError
from movierec.streams.batch import (
    MessageBatch,
    init_parser,
    parse_batch,
    parse_in_child,
    served_table,
)
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
        batch_size: int = 10_000,
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
        # run(): a child process parses a batch while this one consumes the next and stores
        # the one before (parsing holds the GIL); one batch in flight keeps the order
        self._parser: ProcessPoolExecutor | None = None
        self._pending: tuple[MessageBatch, Future[tuple[EventLog, list[Reject]]]] | None = None
        self._expected: dict[int, int] | None = None  # stored next offsets after the pending
        self.consumer = Consumer(consumer_config(bootstrap, group))
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    # --------------------------------------------------------------- rebalance
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self._assigned |= {p.partition for p in partitions}
        self._assigned_at = time.monotonic()
        logger.info("assigned partitions %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._drain()  # the batch in flight is stored and committed before letting go
        self._expected = None
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
        if not messages:
            return 0
        batch = MessageBatch.of(messages)
        self._store_fresh(batch)
        return batch.n

    def _store_fresh(self, batch: MessageBatch) -> None:
        """Filter by the stored offsets, parse here, store and commit (retried on a conflict)."""
        for attempt in range(5):
            batch.filter(self.segments.next_offsets(self.topic))
            log, rejects = parse_batch(*batch.parse_args(), self.topic, self.slugs)
            try:
                self._finish(batch, log, rejects)
                return
            except OffsetConflictError as exc:  # another member stored some of it first
                logger.info("offsets moved under us (%s); filtering again (%d)", exc, attempt)
        raise RuntimeError("could not store the batch: offsets kept moving")

    def _finish(self, batch: MessageBatch, log: EventLog, rejects: list[Reject]) -> None:
        """Check the reject rate, store the batch's segment, commit its offsets, count."""
        total, bad = self.stats.events + batch.n, self.stats.rejects + len(rejects)
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
            "served": served_table(log, batch.parts, batch.offsets),
        }
        advance = batch.advance()
        if advance:
            self.segments.append(self.topic, batch.seen, advance, tables, int(batch.fresh.sum()))
        self._write_rejects(rejects)
        for p, offset in batch.last.items():
            self._next[p] = max(self._next.get(p, 0), offset + 1)
        self._commit(sorted(batch.last))
        fb_new = log.watches.num_rows + log.ratings.num_rows
        served_new = tables["served"].num_rows
        s = self.stats
        s.events, s.rejects, s.batches = total, bad, s.batches + 1
        s.duplicates += log.report.duplicate_rows
        s.replayed += int(batch.n - batch.fresh.sum())
        s.feedback_new += fb_new
        s.served_new += served_new
        s.finished = time.monotonic()
        if self.metrics is not None:
            self.metrics.batch(batch.n, len(rejects), fb_new, served_new)

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
        handed = 0  # events handed to the parser
        try:
            while stop is None or not stop.is_set():
                wait_s = 0.01 if self._pending is not None else 0.1
                msgs = self.consumer.consume(self.batch_size, timeout=wait_s)
                good = [m for m in msgs if m.error() is None]
                for m in msgs:
                    if m.error() is not None:
                        logger.warning("consumer error: %s", m.error())
                now = time.monotonic()
                if good:
                    self._hand_over(MessageBatch.of(good))
                    handed += len(good)
                    idle_since = now
                    if on_batch is not None:
                        on_batch(self.stats)
                elif self._pending is not None:
                    self._drain()  # nothing more came: store what was parsed now
                if now - self._lag_at > 2.0:
                    self._lag_at = now
                    self.update_lag()
                if max_events is not None and handed >= max_events:
                    break
                if idle_exit_s is not None and self._idle_over(now, start, idle_since, idle_exit_s):
                    break
            self._drain()
        finally:
            self.close()
        return self.stats

    def _hand_over(self, batch: MessageBatch) -> None:
        """Start parsing a batch in the parser process, then store the batch before it.

        The batch is filtered by the offsets the store will hold once the batch before is
        stored; if anything else moved them, its store conflicts and it is filtered again.
        """
        if self._parser is None:
            self._parser = ProcessPoolExecutor(
                1, get_context("spawn"), initializer=init_parser, initargs=(self.slugs,)
            )
        if self._expected is None:
            self._expected = self.segments.next_offsets(self.topic)
        batch.filter(self._expected)
        future = self._parser.submit(parse_in_child, *batch.parse_args(), self.topic)
        self._expected = {**self._expected, **batch.advance()}
        self._drain()
        self._pending = (batch, future)

    def _drain(self) -> None:
        """Store and commit the batch in flight (its error, e.g. the reject rate, is raised)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        batch, future = pending
        log, rejects = future.result()
        try:
            self._finish(batch, log, rejects)
        except OffsetConflictError as exc:  # another member stored some of it first
            logger.info("offsets moved under us (%s); filtering again", exc)
            self._expected = None
            self._store_fresh(batch)

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
            self._drain()
        except Exception as exc:  # not stored, not committed: consumed again after a restart
            logger.warning("batch in flight failed: %s", exc)
        if self._parser is not None:
            self._parser.shutdown()
            self._parser = None
        try:
            self._commit(sorted(p for p in self._assigned if p in self._next))
        except Exception as exc:
            logger.warning("final commit failed: %s", exc)
        self.consumer.close()
