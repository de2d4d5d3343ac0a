"""Against a real uvicorn process on 127.0.0.1 (marked slow; still part of `make test`)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Server
from tests.service.conftest import TOKEN

pytestmark = pytest.mark.slow
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(home: Path) -> Iterator[Server]:
    s = Server(home)
    s.start()
    yield s
    s.stop()


def test_reload_20_times_under_load_fails_no_request(server: Server) -> None:
    failures: list[str] = []
    done = threading.Event()
    count = [0]

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            while not done.is_set():
                r = c.get("/recommend/user/1?k=10")
                count[0] += 1
                if r.status_code != 200 or len(r.json()["items"]) != 10:
                    failures.append(f"{r.status_code} {r.text[:100]}")

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    with httpx.Client(base_url=server.url, timeout=60) as admin:
        for _ in range(20):
            r = admin.post("/admin/reload-model", headers=ADMIN)
            assert r.status_code == 200, r.text
    done.set()
    for t in threads:
        t.join()
    assert count[0] > 20
    assert failures == []


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


def test_schemathesis_finds_no_server_error(server: Server, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("schemathesis")
    proc = subprocess.run(
        [
            str(exe),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "10",
            "--seed",
            "1",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            "--phases",
            "coverage,fuzzing,stateful",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
