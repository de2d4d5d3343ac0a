"""Against a real uvicorn process on 127.0.0.1 (marked slow; still part of `make test`).

Reloads under load, schemathesis over the live schema and kill -9 under concurrent writes are
rows of the reliability suite (``tests/test_reliability.py``), not repeated here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Server

pytestmark = pytest.mark.slow


@pytest.fixture
def server(home: Path) -> Iterator[Server]:
    s = Server(home)
    s.start()
    yield s
    s.stop()


def test_acknowledged_feedback_survives_kill_9(server: Server, home: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        movies = [m["movie_id"] for m in c.get("/popular?k=30").json()]
        acked = []
        for m in movies:
            r = c.post("/feedback", json={"user_id": 424242, "movie_id": m, "signal": "like"})
            assert r.status_code == 201
            acked.append(r.json()["id"])
    server.kill9()
    from movierec.data.feedback import FeedbackStore

    store = FeedbackStore.for_settings(home, None)
    stored = {int(e["id"]) for e in store.since(0)}  # type: ignore[call-overload]
    store.close()
    assert set(acked) <= stored
    server.start()
    with httpx.Client(base_url=server.url, timeout=10) as c:
        ids = {i["movie_id"] for i in c.get("/recommend/user/424242?k=50").json()["items"]}
        assert not ids & set(movies)
