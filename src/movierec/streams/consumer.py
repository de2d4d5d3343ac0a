"""The at-least-once stream consumer: parse, validate, store durably, then commit offsets.

Each batch of messages is parsed with the event-log rules (:func:`movierec.data.events.
parse_lines`); a line that fails becomes a reject with its partition, offset and reason. Good
events are written in one transaction per table, keyed by event identity so that a replay
(after a crash between the write and the commit, or a rebalance) adds nothing: a watch is
``(user, movie, minute)`` (so watch depth counts distinct minutes), a rating ``(user, movie,
time)``, a served list its message ``(topic, partition, offset)``. Only then are the batch's offsets
committed, synchronously. Offsets of revoked partitions are committed on rebalance.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from movierec.data.events import EventLog, parse_lines
from movierec.data.feedback import FeedbackStore
from movierec.data.report import Reject
from movierec.data.served import ServedLog
from movierec.streams.metrics import StreamMetrics

logger = logging.getLogger(__name__)


class RejectRateExceededError(RuntimeError):
    """More events were rejected than ``max_reject_rate`` allows (the batch is not committed)."""


@dataclass
class ConsumerStats:
    """Running totals of a consumer."""

    events: int = 0
    rejects: int = 0
    duplicates: int = 0
    feedback_new: int = 0
    served_new: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
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


def feedback_rows(log: EventLog, source: str) -> list[dict[str, Any]]:
    """Ratings and watch minutes of a parsed batch as feedback rows with their identity."""
    rows: list[dict[str, Any]] = []
    r = log.ratings
    for u, m, v, ts in zip(
        r["user_id"].to_pylist(),
        r["movie_id"].to_pylist(),
        r["rating"].to_pylist(),
        r["timestamp"].to_pylist(),
        strict=True,
    ):
        key = f"r:{u}:{m}:{ts}"
        rows.append(_fb(u, m, "rating", float(v), source, ts, key))
    w = log.watches
    for u, m, minute, ts in zip(
        w["user_id"].to_pylist(),
        w["movie_id"].to_pylist(),
        w["minute"].to_pylist(),
        w["timestamp"].to_pylist(),
        strict=True,
    ):
        rows.append(_fb(u, m, "watch", 1.0, source, ts, f"w:{u}:{m}:{minute}"))
    return rows


def _fb(u: int, m: int, signal: str, v: float, source: str, ts: int, key: str) -> dict[str, Any]:
    return {
        "user_id": u,
        "movie_id": m,
        "signal": signal,
        "value": v,
        "source": source,
        "timestamp": float(ts),
        "event_key": key,
    }


def served_rows(log: EventLog, where: list[tuple[int, int]], topic: str) -> list[dict[str, Any]]:
    """Recommendation-request lines of a parsed batch as served-list rows.

    A served list's identity is its message (topic, partition, offset): two requests with
    the same answer in the same second stay two lists, and a replay of the message adds none.
    """
    q = log.requests
    rows = []
    servers = log.servers or ("",) * q.num_rows
    for u, ts, status, result, latency, server, line in zip(
        q["user_id"].to_pylist(),
        q["timestamp"].to_pylist(),
        q["status"].to_pylist(),
        q["result"].to_pylist(),
        q["latency_ms"].to_pylist(),
        servers,
        log.request_lines,
        strict=True,
    ):
        items = ",".join(x.strip() for x in str(result).split(",") if x.strip())
        part, offset = where[line - 1]
        rows.append(
            {
                "event_key": f"q:{topic}:{part}:{offset}",
                "timestamp": ts,
                "user_id": u,
                "server": server,
                "status": status,
                "items": items,
                "latency_ms": latency,
            }
        )
    return rows


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
        self.served = ServedLog(store.engine)
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
        self.consumer = Consumer(consumer_config(bootstrap, group))
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    # --------------------------------------------------------------- rebalance
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self._assigned |= {p.partition for p in partitions}
        self._assigned_at = time.monotonic()
        logger.info("assigned partitions %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
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
        """Parse, validate and durably store one batch; return the events in it.

        Raises:
            RejectRateExceededError: The running reject rate is above the limit (nothing of the
                batch is stored or committed).
        """
        lines: list[str] = []
        where: list[tuple[int, int]] = []
        undecodable: list[Reject] = []
        last: dict[int, int] = {}
        for m in messages:
            raw, part, offset = m.value() or b"", m.partition(), m.offset()
            last[part] = offset
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                undecodable.append(Reject(f"{self.topic}[{part}]", offset, "*", "not utf-8", ""))
                continue
            where.append((part, offset))
        log = parse_lines(lines, source=self.topic, slugs=self.slugs)
        rejects = undecodable + [
            Reject(
                f"{self.topic}[{where[r.line - 1][0]}]",
                where[r.line - 1][1],
                r.field,
                r.reason,
                r.raw,
            )
            for r in log.report.rejects
            if not r.reason.startswith("duplicate")
        ]
        n = len(messages)
        total, bad = self.stats.events + n, self.stats.rejects + len(rejects)
        if self.max_reject_rate is not None and total >= 100 and bad > self.max_reject_rate * total:
            self._write_rejects(rejects)
            raise RejectRateExceededError(
                f"{bad} of {total} events rejected ({bad / total:.1%}) > "
                f"max reject rate {self.max_reject_rate:.1%}; offsets not committed"
            )
        fb_new = self.store.add_events(feedback_rows(log, f"stream:{self.topic}"))
        served_new = self.served.add_many(served_rows(log, where, self.topic))
        self._write_rejects(rejects)
        for p, offset in last.items():
            self._next[p] = max(self._next.get(p, 0), offset + 1)
        self._commit(sorted(last))
        s = self.stats
        s.events, s.rejects, s.batches = total, bad, s.batches + 1
        s.duplicates += log.report.duplicate_rows
        s.feedback_new += fb_new
        s.served_new += served_new
        if self.metrics is not None:
            self.metrics.batch(n, len(rejects), fb_new, served_new)
        return n

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
        try:
            while stop is None or not stop.is_set():
                msgs = self.consumer.consume(self.batch_size, timeout=0.1)
                good = [m for m in msgs if m.error() is None]
                for m in msgs:
                    if m.error() is not None:
                        logger.warning("consumer error: %s", m.error())
                now = time.monotonic()
                if good:
                    self.process(good)
                    idle_since = now
                    if on_batch is not None:
                        on_batch(self.stats)
                if now - self._lag_at > 2.0:
                    self._lag_at = now
                    self.update_lag()
                if max_events is not None and self.stats.events >= max_events:
                    break
                if idle_exit_s is not None and self._idle_over(now, start, idle_since, idle_exit_s):
                    break
        finally:
            self.close()
        return self.stats

    def _idle_over(self, now: float, start: float, idle_since: float, limit: float) -> bool:
        """Idle for ``limit`` seconds since partitions were assigned (or the last batch).

        Before any assignment (a group still waiting for a dead member's session to expire)
        the consumer waits at least :attr:`JOIN_WAIT_S`.
        """
        if self._assigned_at is None:
            return now - start > max(limit, self.JOIN_WAIT_S)
        return now - max(idle_since, self._assigned_at) > limit

    def close(self) -> None:
        """Commit what was processed and leave the group."""
        try:
            self._commit(sorted(p for p in self._assigned if p in self._next))
        except Exception as exc:
            logger.warning("final commit failed: %s", exc)
        self.consumer.close()
