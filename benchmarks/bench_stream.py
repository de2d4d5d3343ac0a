"""Stream consumer throughput and event-to-answer freshness (JSON output).

    python benchmarks/bench_stream.py [--events 500000] [--out benchmarks/results/stream.json]

Throughput: the same topic (2 partitions, a realistic mix of watch, rating and request lines)
is drained by (a) a bare confluent-kafka loop (``consume(batch)``, decode, synchronous commit
per batch) and (b) movierec's consumer, its own ``run`` loop (``consume(batch)``; parse +
validate + durable idempotent SQLite segment write + synchronous commit, one batch in flight
while the next is consumed), alternated, each with a fresh group; timing starts at the
first non-empty batch (group joins excluded) and ends when the last batch is committed.

Freshness: a real API process (uvicorn on 127.0.0.1, a popularity+ALS bundle of
ml-latest-small) with the consumer running; for each of 100 users a watch of their current
top movie is produced and the API polled every 5 ms until the movie leaves the answer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_lines(n: int, seed: int = 0) -> list[str]:
    """A realistic mix: 80% watch minutes, 10% ratings, 10% recommendation requests."""
    rng = np.random.default_rng(seed)
    users = rng.integers(1, 50_000, n)
    movies = rng.integers(1, 60_000, n)
    kind = rng.random(n)
    out = []
    for i in range(n):
        t = f"2024-03-{1 + i % 28:02d}T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}"
        u, m = int(users[i]), int(movies[i])
        if kind[i] < 0.8:
            out.append(f"{t},{u},GET /data/m/{m}/{i % 120}.mpg")
        elif kind[i] < 0.9:
            out.append(f"{t},{u},GET /rate/{m}={1 + i % 5}")
        else:
            out.append(
                f"{t},{u},recommendation request n1:8082, status 200, result: {m}, {m + 1}, 9 ms"
            )
    return out


def bare(bootstrap: str, topic: str, n: int, group: str, batch: int) -> float:
    from confluent_kafka import Consumer

    from movierec.streams.consumer import consumer_config

    config = consumer_config(bootstrap, group)
    config.pop("enable.auto.offset.store")  # the bare loop commits what it consumed
    c = Consumer(config)
    c.subscribe([topic])
    got, t0 = 0, None
    while got < n:
        msgs = c.consume(batch, timeout=0.1)
        if not msgs:
            continue
        t0 = t0 or time.perf_counter()
        for m in msgs:
            if m.error() is None:
                (m.value() or b"").decode("utf-8")
                got += 1
        c.commit(asynchronous=False)
    dt = time.perf_counter() - (t0 or time.perf_counter())
    c.close()
    return n / dt


def ours(bootstrap: str, topic: str, n: int, group: str, db: Path, batch: int) -> float:
    from movierec.data.feedback import FeedbackStore
    from movierec.streams.consumer import ConsumerStats, StreamConsumer

    store = FeedbackStore(f"sqlite:///{db}", overlay=False)
    c = StreamConsumer(store, bootstrap=bootstrap, topic=topic, group=group, batch_size=batch)
    t0: list[float] = []

    def first(stats: ConsumerStats) -> None:  # called when a batch is handed over
        if not t0:
            t0.append(time.monotonic())

    stats = c.run(max_events=n, on_batch=first)  # the consumer's own (pipelined) loop
    store.close()
    assert stats.events == n, stats
    return n / (stats.finished - t0[0])


def freshness(bootstrap: str, topic: str, samples: int = 100) -> dict[str, float]:
    import httpx
    from tests.helpers import Server

    from movierec.data.feedback import FeedbackStore
    from movierec.lifecycle.train import train_and_publish
    from movierec.settings import Settings
    from movierec.streams.consumer import StreamConsumer
    from movierec.streams.producer import LineProducer

    home = Path(tempfile.mkdtemp()) / "home"
    train_and_publish(
        Settings(home=home),
        "ml-latest-small",
        "als",
        strategies=("popularity", "als"),
        evaluate=False,
    )
    server = Server(home)
    server.start()
    store = FeedbackStore.for_settings(home, None, overlay=False)
    stop = threading.Event()
    cons = StreamConsumer(store, bootstrap=bootstrap, topic=topic, group="fresh")
    worker = threading.Thread(target=cons.run, args=(stop,))
    worker.start()
    prod = LineProducer(bootstrap, topic)
    times = []
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            for user in range(1, samples + 1):
                top = c.get(f"/recommend/user/{user}?k=10").json()["items"][0]["movie_id"]
                t0 = time.perf_counter()
                prod.send(f"2024-03-01T10:00:00,{user},GET /data/m/{top}/0.mpg")
                prod.flush()
                while time.perf_counter() - t0 < 10:
                    items = c.get(f"/recommend/user/{user}?k=10").json()["items"]
                    if top not in {i["movie_id"] for i in items}:
                        break
                    time.sleep(0.005)
                times.append(time.perf_counter() - t0)
    finally:
        stop.set()
        worker.join(30)
        server.stop()
        store.close()
    arr = np.asarray(times) * 1000
    return {
        "samples": samples,
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "max_ms": float(arr.max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/stream.json")
    ap.add_argument("--batch", type=int, default=None, help="Both sides (consumer's default)")
    ap.add_argument("--rounds", type=int, default=3, help="Alternated rounds (medians)")
    args = ap.parse_args()
    from movierec.streams.broker import Broker, create_topic
    from movierec.streams.consumer import BATCH
    from movierec.streams.producer import LineProducer

    batch = args.batch or BATCH
    lines = make_lines(args.events)
    with Broker() as b:
        create_topic(b.bootstrap, "bench", 2)
        p = LineProducer(b.bootstrap, "bench")
        for line in lines:
            p.send(line)
        assert p.flush(120) == 0
        tmp = Path(tempfile.mkdtemp())
        runs: dict[str, list[float]] = {"bare": [], "movierec": []}
        for i in range(args.rounds):
            order = ("bare", "movierec") if i % 2 == 0 else ("movierec", "bare")
            for side in order:
                if side == "bare":
                    runs["bare"].append(bare(b.bootstrap, "bench", args.events, f"bare{i}", batch))
                else:
                    db = tmp / f"fb{i}.db"
                    runs["movierec"].append(
                        ours(b.bootstrap, "bench", args.events, f"ours{i}", db, batch)
                    )
                print(f"{side}: {runs[side][-1]:,.0f} events/s", flush=True)
        create_topic(b.bootstrap, "fresh", 2)
        fresh = freshness(b.bootstrap, "fresh")
    bare_rate, our_rate = statistics.median(runs["bare"]), statistics.median(runs["movierec"])
    result: dict[str, Any] = {
        "events": args.events,
        "batch": batch,
        "avg_line_bytes": sum(map(len, lines)) / len(lines),
        "bare_events_per_s": bare_rate,
        "movierec_events_per_s": our_rate,
        "ratio": our_rate / bare_rate,
        "runs": runs,
        "freshness": fresh,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
