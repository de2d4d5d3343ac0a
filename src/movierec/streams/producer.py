"""Producers: replay an event-log file, or simulate users who request, watch and rate.

The simulated users know their future: each is a ml-latest-small (or any release) user whose
latest interactions were held out (``holdout`` share, by time). A user asks the running API
for recommendations (the service's answer is logged as a recommendation-request line), then
watches each shown movie with probability ``p_hit`` when it is in their held-out future and
``p_miss`` otherwise (a few minutes each), and rates some of what they watched (their real
held-out rating when known). Events are keyed by user so a user's events stay in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def producer_config(bootstrap: str) -> dict[str, Any]:
    """Librdkafka producer settings: acks from the leader, small linger for batching."""
    return {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"}


class LineProducer:
    """Produce text lines to one topic, keyed by the user id field, at a bounded rate."""

    def __init__(self, bootstrap: str, topic: str, rate: float | None = None) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.rate = rate
        self.sent = 0
        self.failed = 0
        self._t0 = time.monotonic()
        self.producer = Producer(producer_config(bootstrap))

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            logger.warning("delivery failed: %s", err)

    def send(self, line: str) -> None:
        """Queue one line (blocks to keep to ``rate`` lines per second)."""
        parts = line.split(",", 2)
        key = parts[1].encode() if len(parts) > 1 else None
        while True:
            try:
                self.producer.produce(
                    self.topic, line.encode("utf-8"), key=key, on_delivery=self._delivered
                )
                break
            except BufferError:  # local queue full: let it drain
                self.producer.poll(0.05)
        self.sent += 1
        self.producer.poll(0)
        if self.rate:
            ahead = self.sent / self.rate - (time.monotonic() - self._t0)
            if ahead > 0:
                time.sleep(ahead)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for delivery; return the messages still queued (0 = all delivered)."""
        return int(self.producer.flush(timeout))


def replay(
    path: Path,
    producer: LineProducer,
    *,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Send the lines of an event-log file; return how many were sent."""
    n = 0
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line:
                continue
            producer.send(line)
            n += 1
            if progress is not None and n % 1000 == 0:
                progress(n)
            if limit is not None and n >= limit:
                break
    producer.flush()
    return n


def stamp(ts: float) -> str:
    """Event-log time format (``2024-03-01T10:15:02``, UTC)."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class SimUser:
    """A simulated user: id, held-out future (movie -> rating)."""

    user_id: int
    future: dict[int, float]


@dataclass
class Population:
    """Simulated users built from a ratings table by holding out each user's latest share."""

    users: list[SimUser]

    @classmethod
    def from_ratings(
        cls,
        users: np.ndarray,
        movies: np.ndarray,
        ratings: np.ndarray,
        times: np.ndarray,
        holdout: float = 0.2,
        min_future: int = 3,
    ) -> Population:
        """Each user's latest ``holdout`` share of interactions (by time) is their future."""
        order = np.lexsort((times, users))
        u, m, r = users[order], movies[order], ratings[order]
        bounds = np.flatnonzero(np.diff(u)) + 1
        out: list[SimUser] = []
        for a, b in zip(np.r_[0, bounds], np.r_[bounds, u.size], strict=True):
            n_future = round((b - a) * holdout)
            if n_future < min_future:
                continue
            fut = {
                int(x): float(y)
                for x, y in zip(m[b - n_future : b], r[b - n_future : b], strict=True)
            }
            out.append(SimUser(int(u[a]), fut))
        return cls(out)


@dataclass
class SimConfig:
    """Behaviour of simulated users."""

    p_hit: float = 0.5
    p_miss: float = 0.02
    p_rate: float = 0.5
    minutes: tuple[int, int] = (3, 20)
    k: int = 10
    seed: int = 0


@dataclass
class SimStats:
    """What a simulation did."""

    requests: int = 0
    failed_requests: int = 0
    shown: int = 0
    watched: int = 0
    watched_in_future: int = 0
    rated: int = 0
    lines: int = 0


def simulate(
    population: Population,
    ask: Callable[[int], tuple[list[int], dict[str, str], float]],
    emit: Callable[[str], None],
    *,
    config: SimConfig,
    duration_s: float | None = None,
    max_requests: int | None = None,
    clock: Callable[[], float] = time.time,
) -> SimStats:
    """Run simulated sessions until the duration or request budget is spent.

    Args:
        population: Users and their held-out futures.
        ask: ``user_id -> (movie ids shown, response headers, latency ms)`` (the live API).
        emit: Receives each event-log line (a producer's ``send``).
        config: Behaviour probabilities.
        duration_s: Wall-clock budget.
        max_requests: Request budget.
        clock: Event time source.
    """
    rng = np.random.default_rng(config.seed)
    stats = SimStats()
    t_end = None if duration_s is None else time.monotonic() + duration_s
    for user in _cycle(population.users, rng):
        if t_end is not None and time.monotonic() >= t_end:
            break
        if max_requests is not None and stats.requests >= max_requests:
            break
        try:
            shown, headers, latency = ask(user.user_id)
        except Exception as exc:
            stats.failed_requests += 1
            logger.debug("request for %d failed: %s", user.user_id, exc)
            continue
        stats.requests += 1
        now = clock()
        server = headers.get("x-variant") or headers.get("x-model-version") or "api"
        ids = ", ".join(str(i) for i in shown)
        emit(
            f"{stamp(now)},{user.user_id},recommendation request {server}, status 200, "
            f"result: {ids}, {latency:.0f} ms"
        )
        stats.lines += 1
        stats.shown += len(shown)
        for pos, movie in enumerate(shown):
            in_future = movie in user.future
            p = config.p_hit if in_future else config.p_miss
            if rng.random() >= p:
                continue
            stats.watched += 1
            stats.watched_in_future += int(in_future)
            minutes = int(rng.integers(config.minutes[0], config.minutes[1] + 1))
            for minute in range(minutes):
                t = stamp(now + 1 + pos + minute)
                emit(f"{t},{user.user_id},GET /data/m/{movie}/{minute}.mpg")
                stats.lines += 1
            if rng.random() < config.p_rate:
                rating = user.future.get(movie, 3.0 if not in_future else 4.0)
                emit(
                    f"{stamp(now + 2 + pos + minutes)},{user.user_id},GET /rate/{movie}={rating:g}"
                )
                stats.lines += 1
                stats.rated += 1
    return stats


def _cycle(users: list[SimUser], rng: np.random.Generator) -> Iterator[SimUser]:
    """Users in random order, over and over."""
    if not users:
        return
    while True:
        for i in rng.permutation(len(users)):
            yield users[int(i)]


def http_asker(
    base_url: str, k: int, api_key: str | None = None, timeout: float = 5.0
) -> Callable[[int], tuple[list[int], dict[str, str], float]]:
    """``ask`` for :func:`simulate` that calls ``GET /recommend/user/{id}`` on a running API."""
    import httpx

    client = httpx.Client(base_url=base_url, timeout=timeout)
    headers = {"X-API-Key": api_key} if api_key else {}

    def ask(user_id: int) -> tuple[list[int], dict[str, str], float]:
        t0 = time.perf_counter()
        r = client.get(f"/recommend/user/{user_id}", params={"k": k}, headers=headers)
        latency = (time.perf_counter() - t0) * 1000
        r.raise_for_status()
        body = r.json()
        ids = [int(x["movie_id"]) for x in body.get("items", [])]
        return ids, {k.lower(): v for k, v in r.headers.items()}, latency

    return ask
