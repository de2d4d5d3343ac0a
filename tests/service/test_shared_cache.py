"""Answers shared through a real Redis by two API processes (issue #15, shared cache)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import Server

pytestmark = pytest.mark.slow
REDIS = "redis://127.0.0.1:6379/15"


@pytest.fixture
def redis_db() -> object:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (see machines/python-svc.md)")
    client.flushdb()
    yield client
    client.flushdb()


def _items(c: httpx.Client, u: int) -> list[int]:
    return [i["movie_id"] for i in c.get(f"/recommend/user/{u}?k=5").json()["items"]]


def test_two_processes_share_answers_and_feedback_drops_them(home: Path, redis_db: object) -> None:
    env = {"MOVIEREC_REDIS_URL": REDIS, "MOVIEREC_WARM_CACHE": "false"}
    a, b = Server(home, env), Server(home, env)  # two workers, one home, one Redis
    a.start()
    b.start()
    try:
        with httpx.Client(base_url=a.url, timeout=10) as ca:
            version = ca.get("/ready").json()["model_version"]
            first = {u: _items(ca, u) for u in range(1, 31)}
        keys = redis_db.keys(f"movierec:answer:{version}:*")  # type: ignore[attr-defined]
        assert len(keys) == 30  # every answer shared once
        hits = redis_db.info("stats")["keyspace_hits"]  # type: ignore[attr-defined]
        with httpx.Client(base_url=b.url, timeout=10) as cb:
            assert {u: _items(cb, u) for u in range(1, 31)} == first
        # the second process computed nothing: it read every answer from Redis
        assert redis_db.info("stats")["keyspace_hits"] - hits == 30  # type: ignore[attr-defined]
        with httpx.Client(base_url=a.url, timeout=10) as ca:
            r = ca.post("/feedback", json={"user_id": 3, "movie_id": first[3][0], "signal": "like"})
            assert r.status_code == 201
        assert len(redis_db.keys(f"movierec:answer:{version}:*")) == 29  # type: ignore[attr-defined]
        time.sleep(0.6)  # the other process folds the event in (MOVIEREC_FEEDBACK_POLL_S)
        for url in (a.url, b.url):
            with httpx.Client(base_url=url, timeout=10) as c:
                assert first[3][0] not in _items(c, 3)
        # answers computed for a user with feedback are never shared
        assert len(redis_db.keys(f"movierec:answer:{version}:*")) == 29  # type: ignore[attr-defined]
    finally:
        a.stop()
        b.stop()
