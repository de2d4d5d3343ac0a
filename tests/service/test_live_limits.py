"""Bounded work on a real uvicorn process: the biggest allowed batches, several at once, run
in bounded time and memory while /health keeps answering; one over the limit is refused
before any work."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from movierec.lifecycle.bundle import load_bundle
from movierec.settings import Settings
from tests.helpers import Server

pytestmark = pytest.mark.slow


#: Times GET /health every 50 ms and prints each latency (s) until terminated.
_HEALTH_WATCH = """
import signal, sys, time, httpx
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with httpx.Client(timeout=10) as c:
    while True:
        t0 = time.perf_counter()
        assert c.get(sys.argv[1]).status_code == 200
        print(time.perf_counter() - t0, flush=True)
        time.sleep(0.05)
"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("MOVIEREC_WARM_CACHE", "false")
    s = Server(home)
    s.start()
    yield s
    s.stop()


def test_biggest_allowed_batches_at_once_are_bounded(server: Server, home: Path) -> None:
    limits = Settings()
    users = load_bundle(home / "bundles").users.ids
    ids = np.resize(users, limits.max_batch_users).tolist()
    k = limits.max_batch_items // limits.max_batch_users
    body = {"user_ids": ids, "k": k}
    assert server.proc is not None
    pid = server.proc.pid
    with httpx.Client(base_url=server.url, timeout=120) as c:
        c.post("/recommend/batch", json={"user_ids": ids[:10], "k": k})  # first-use costs
        rss0 = _rss_mb(pid)
        statuses: list[int] = []
        sizes: list[int] = []

        def batch() -> None:
            r = httpx.post(f"{server.url}/recommend/batch", json=body, timeout=120)
            statuses.append(r.status_code)
            sizes.append(len(r.content))

        # /health is timed from a process of its own: a thread here would also measure this
        # process (four threads reading answers of up to 32 MB, a collection of its heap)
        watcher = subprocess.Popen(
            [sys.executable, "-c", _HEALTH_WATCH, f"{server.url}/health"],
            stdout=subprocess.PIPE,
            text=True,
        )
        t0 = time.perf_counter()
        workers = [threading.Thread(target=batch) for _ in range(4)]
        for w in workers:
            w.start()
        peak = rss0
        while any(w.is_alive() for w in workers):
            peak = max(peak, _rss_mb(pid))
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        watcher.terminate()
        out, _ = watcher.communicate(timeout=30)
        health_s = [float(x) for x in out.split()]
        # over the limit: refused at once
        t1 = time.perf_counter()
        over = c.post("/recommend/batch", json={"user_ids": ids, "k": k + 1})
        refused_s = time.perf_counter() - t1
    assert all(s in (200, 503) for s in statuses) and statuses.count(200) >= 2, statuses
    assert max(sizes) <= limits.max_response_bytes
    # two computed at once (batch_slots), each answer at most max_response_bytes: bounded growth
    assert peak - rss0 < 4 * limits.max_response_bytes / 2**20 + 300, (rss0, peak)
    assert wall < 120
    assert health_s and max(health_s) < 1.0, max(health_s)
    assert over.status_code == 422 and refused_s < 0.5
