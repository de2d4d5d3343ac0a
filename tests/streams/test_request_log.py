"""The service logs its own answers to the stream; the consumer stores them as served lists."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from movierec.data.feedback import FeedbackStore
from movierec.data.served import ServedLog
from movierec.experiments.design import Experiment, Variant, write_experiment
from movierec.streams.broker import Broker
from movierec.streams.consumer import StreamConsumer
from tests.helpers import Server

pytestmark = pytest.mark.slow


def test_answers_reach_the_served_table_with_their_variant(
    broker: Broker, topic: str, home: Path
) -> None:
    exp = Experiment("exp", "s", (Variant("control", "popularity"), Variant("treatment", "ease")))
    write_experiment(home / "experiments.json", exp)
    server = Server(
        home, {"MOVIEREC_REQUEST_LOG_TOPIC": topic, "MOVIEREC_KAFKA_BOOTSTRAP": broker.bootstrap}
    )
    server.start()
    store = FeedbackStore.for_settings(home, None, overlay=False)
    stop = threading.Event()
    consumer = StreamConsumer(store, bootstrap=broker.bootstrap, topic=topic, group="log")
    worker = threading.Thread(target=consumer.run, args=(stop,))
    worker.start()
    try:
        shown = {}
        with httpx.Client(base_url=server.url, timeout=10) as c:
            for u in range(1, 21):
                r = c.get(f"/recommend/user/{u}?k=5")
                shown[u] = ([i["movie_id"] for i in r.json()["items"]], r.headers["X-Variant"])
            version = c.get("/ready").json()["model_version"]
            c.get("/recommend/user/1?k=5&strategy=ease")  # outside the experiment
        served = ServedLog(store.engine)
        deadline = time.monotonic() + 30
        while served.count() < 21 and time.monotonic() < deadline:
            time.sleep(0.1)
        rows = served.rows()
        assert len(rows) == 21
        by_user = {r["user_id"]: r for r in rows if r["server"].startswith("exp/")}
        for u, (items, label) in shown.items():
            assert by_user[u]["items"] == items and by_user[u]["server"] == label
        assert any(r["server"] == version for r in rows)
    finally:
        stop.set()
        worker.join(30)
        server.stop()
        store.close()
