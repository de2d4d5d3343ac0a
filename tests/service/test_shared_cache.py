"""Answers shared through a real Redis by two uvicorn workers (issue #15, shared cache)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import TOKEN, _free_port, wait_until_ok

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


def test_two_workers_share_answers_and_feedback_drops_them(home: Path, redis_db: object) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "MOVIEREC_HOME": str(home),
        "MOVIEREC_ADMIN_TOKEN": TOKEN,
        "MOVIEREC_REDIS_URL": REDIS,
        "MOVIEREC_WARM_CACHE": "false",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "movierec.service.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ok(f"{url}/ready", proc, timeout=90)
        first: dict[int, list[int]] = {}
        with httpx.Client(base_url=url, timeout=10) as c:
            version = c.get("/ready").json()["model_version"]
            for u in range(1, 31):
                first[u] = [
                    i["movie_id"] for i in c.get(f"/recommend/user/{u}?k=5").json()["items"]
                ]
        keys = redis_db.keys(f"movierec:answer:{version}:*")  # type: ignore[attr-defined]
        assert len(keys) == 30  # every answer shared once, whichever worker computed it
        hits_before = redis_db.info("stats")["keyspace_hits"]  # type: ignore[attr-defined]
        # new connections land on either worker: the one that did not compute reads Redis
        for _ in range(3):
            with httpx.Client(base_url=url, timeout=10) as c:
                for u in range(1, 31):
                    got = [i["movie_id"] for i in c.get(f"/recommend/user/{u}?k=5").json()["items"]]
                    assert got == first[u]
        assert redis_db.info("stats")["keyspace_hits"] > hits_before  # type: ignore[attr-defined]
        # feedback drops the user's shared answers; every worker answers them freshly
        with httpx.Client(base_url=url, timeout=10) as c:
            r = c.post("/feedback", json={"user_id": 3, "movie_id": first[3][0], "signal": "like"})
            assert r.status_code == 201
            time.sleep(0.5)  # the other worker folds the event in (MOVIEREC_FEEDBACK_POLL_S)
            assert len(redis_db.keys(f"movierec:answer:{version}:*")) == 29  # type: ignore[attr-defined]
            for _ in range(6):
                with httpx.Client(base_url=url, timeout=10) as fresh:
                    items = [
                        i["movie_id"] for i in fresh.get("/recommend/user/3?k=5").json()["items"]
                    ]
                    assert first[3][0] not in items
            # answers computed for a user with feedback are never shared
            assert len(redis_db.keys(f"movierec:answer:{version}:*")) == 29  # type: ignore[attr-defined]
    finally:
        proc.terminate()
        proc.wait(20)
