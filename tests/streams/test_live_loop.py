"""The live loop end to end: simulated users -> real API -> Kafka -> consumer -> store -> API."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from movierec.data.feedback import FeedbackStore
from movierec.data.served import ServedLog
from movierec.data.tables import load_tables
from movierec.lifecycle.train import train_and_publish
from movierec.settings import Settings
from movierec.streams.broker import Broker
from movierec.streams.consumer import StreamConsumer
from movierec.streams.producer import LineProducer, Population, SimConfig, http_asker, simulate
from tests.helpers import Server

pytestmark = pytest.mark.slow


def test_stream_reaches_the_next_answer_and_the_next_training(
    broker: Broker, topic: str, home: Path, synth_release: Path
) -> None:
    server = Server(home)
    server.start()
    store = FeedbackStore.for_settings(home, None, overlay=False)
    stop = threading.Event()
    consumer = StreamConsumer(store, bootstrap=broker.bootstrap, topic=topic, group="live")
    worker = threading.Thread(target=consumer.run, args=(stop,))
    worker.start()
    producer = LineProducer(broker.bootstrap, topic)
    try:
        # 1. simulated users ask the live API; what it served is logged, consumed, stored
        r = load_tables(str(synth_release), Settings(home=home)).ratings
        pop = Population.from_ratings(
            r["user_id"].to_numpy(),
            r["movie_id"].to_numpy(),
            r["rating"].to_numpy(),
            r["timestamp"].to_numpy(),
        )
        stats = simulate(
            pop,
            http_asker(server.url, 10),
            producer.send,
            config=SimConfig(seed=1),
            max_requests=40,
        )
        assert producer.flush() == 0
        served = ServedLog(store.engine)
        deadline = time.monotonic() + 30
        while served.count() < stats.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stats.requests == 40 and served.count() == 40  # exact: served == counted
        assert stats.watched > 0 and store.count() > 0
        # 2. a streamed watch changes the user's next answer (watched movies are left out)
        fresh: list[float] = []
        with httpx.Client(base_url=server.url, timeout=10) as c:
            for user in range(1, 21):
                top = c.get(f"/recommend/user/{user}?k=10").json()["items"][0]["movie_id"]
                t0 = time.monotonic()
                producer.send(f"2024-03-01T10:00:00,{user},GET /data/m/{top}/0.mpg")
                producer.flush()
                while time.monotonic() - t0 < 10:
                    body = c.get(f"/recommend/user/{user}?k=10").json()
                    if top not in {i["movie_id"] for i in body["items"]}:
                        break
                    time.sleep(0.01)
                fresh.append(time.monotonic() - t0)
                assert body["source"].endswith("_foldin")
        p99 = float(np.percentile(fresh, 99))
        assert p99 <= 2.0, f"event-to-answer freshness p99 {p99:.2f} s"
    finally:
        stop.set()
        worker.join(30)
        server.stop()
    # 3. the next training run includes the streamed events
    stored = store.count()
    store.close()
    result = train_and_publish(
        Settings(home=home),
        str(synth_release),
        "popularity",
        strategies=("popularity",),
        evaluate=False,
    )
    assert result.feedback["events"] == stored
