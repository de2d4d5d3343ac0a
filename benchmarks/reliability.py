"""One reliability suite: real processes on 127.0.0.1, one table of figures, JSON.

    python benchmarks/reliability.py            # make reliability: full length
    python benchmarks/reliability.py --short    # what make test runs (tests/test_reliability.py)

Rows (each against a real uvicorn server over a freshly trained synthetic bundle):

* fuzzing      schemathesis over the live OpenAPI schema (every operation, stateful links):
               server errors and schema violations, each must be 0.
* load         sustained mixed load (cached answers, per-request fold-in, feedback writes) at 8
               connections on 1 and 2 workers: requests, errors, p50/p99 per kind.
* reload       model swaps under load: failed requests, answers whose items are not exactly
               that version's answer (a half-loaded model), peak RSS during the swaps.
* crash        kill -9 of the API during feedback writes (acknowledged events lost), and of
               ``movierec train`` at random moments of its publish (a CURRENT that does not load).
* security     admin routes without / with wrong / with query-string credentials, SQL-injection
               strings in every string parameter, path traversal in versions and dataset names,
               oversized bodies and batches, a planted secret in logs, bodies and /model.
* resources    RSS and open file descriptors of the API after N mixed requests and N reloads.

Every row says what it counted and whether it passed; the process exits 1 when one did not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from movierec.streams.broker import free_port
from reliability_ingest import consumer_crash, row_bad_data, scheduler_crash

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TOKEN = "reliability-admin-token-0123456789"
API_KEY = "reliability-api-key-0123456789"
SECRET_PASSWORD = "S3cr3t-Pa55word-for-the-db"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
WRITE = {"X-API-Key": API_KEY}


class Api:
    """``uvicorn movierec.service.app:create_app`` on 127.0.0.1 with its own log file."""

    def __init__(
        self,
        home: Path,
        workers: int = 1,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.home = home
        self.cwd = cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = env or {}
        self.log = home / f"api-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Api:
        env = {
            **os.environ,
            "MOVIEREC_HOME": str(self.home),
            "MOVIEREC_ADMIN_TOKEN": TOKEN,
            "MOVIEREC_API_KEY": API_KEY,
            "MOVIEREC_RELOAD_POLL_S": "0.2",
            "MOVIEREC_LOG_LEVEL": "INFO",
            **self.env,
        }
        cmd = [sys.executable, "-m", "uvicorn", "movierec.service.app:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
               "--log-level", "info"]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, cwd=self.cwd
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"API exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        raise TimeoutError("API did not become ready")

    def pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True)
        kids: dict[int, list[int]] = {}
        for line in out.stdout.splitlines():
            p, pp = (int(x) for x in line.split())
            kids.setdefault(pp, []).append(p)
        found, todo = [], [self.proc.pid]
        while todo:
            p = todo.pop()
            found.append(p)
            todo += kids.get(p, [])
        return found

    def rss_mb(self) -> float:
        total = 0
        for p in self.pids():
            try:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def fds(self) -> int:
        n = 0
        for p in self.pids():
            with contextlib.suppress(OSError):
                n += len(os.listdir(f"/proc/{p}/fd"))
        return n

    def kill9(self) -> None:
        for p in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()


def train_home(work: Path, ratings: int) -> Path:
    """A home with one published bundle (popularity, ease, als) of a synthetic release."""
    from movierec.data.synthetic import SynthConfig, generate
    from movierec.lifecycle.train import train_and_publish
    from movierec.settings import Settings

    data = work / "release"
    generate(data, SynthConfig(ratings=ratings, seed=11))
    home = work / "home"
    train_and_publish(
        Settings(home=home),
        str(data),
        "ease",
        strategies=("popularity", "ease", "als"),
        params={"als": {"factors": 8, "iterations": 3}},
        evaluate=False,
    )
    return home


def republish(home: Path, tag: int) -> str:
    """Publish another verified copy of the current bundle under a new version (a model swap)."""
    from movierec.lifecycle.bundle import current_version, set_current

    bundles = home / "bundles"
    cur = current_version(bundles)
    assert cur is not None
    version = f"{cur.split('-r')[0]}-r{tag}"
    tmp = bundles / f".tmp-{version}"
    shutil.copytree(bundles / cur, tmp)
    os.replace(tmp, bundles / version)
    set_current(bundles, version)
    return version


# ------------------------------------------------------------------------- rows
def row_fuzzing(api: Api, work: Path, examples: int) -> dict[str, Any]:
    """schemathesis: not_a_server_error and response_schema_conformance, separately counted."""
    out: dict[str, Any] = {"row": "fuzzing"}
    exe = BIN / "schemathesis"
    for label, checks in (("server_errors", "not_a_server_error"),
                          ("schema_violations", "response_schema_conformance")):  # fmt: skip
        res = subprocess.run(
            [str(exe), "run", f"{api.url}/openapi.json", "--checks", checks,
             "--max-examples", str(examples), "--seed", "1", "-H",
             f"Authorization: Bearer {TOKEN}", "-H", f"X-API-Key: {API_KEY}",
             "--phases", "coverage,fuzzing,stateful", "--no-color"],
            capture_output=True, text=True, timeout=1800, cwd=work,
        )  # fmt: skip
        text = res.stdout
        out[label] = 0 if res.returncode == 0 else max(1, text.count("\n_ "))
        cases = [int(x) for x in _numbers_before(text, "generated")]
        out.setdefault("cases", 0)
        out["cases"] += sum(cases) if cases else 0
        if res.returncode != 0:
            out[f"{label}_report"] = text[-3000:]
    out["passed"] = out["server_errors"] == 0 and out["schema_violations"] == 0
    return out


def _numbers_before(text: str, word: str) -> list[str]:
    import re

    return re.findall(rf"(\d+) {word}", text)


async def _mixed_load(
    url: str, seconds: float, conns: int, users: list[int], movies: list[int]
) -> dict[str, Any]:
    kinds: dict[str, list[float]] = {"cached": [], "fold_in": [], "feedback": []}
    errors: dict[str, int] = {k: 0 for k in kinds}
    versions: set[str] = set()
    stop = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        rng = random.Random(w)
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            while time.perf_counter() < stop:
                kind = rng.choices(("cached", "fold_in", "feedback"), (6, 3, 1))[0]
                u = rng.choice(users)
                t0 = time.perf_counter()
                if kind == "cached":
                    r = await c.get(f"/recommend/user/{u}?k=10")
                elif kind == "fold_in":
                    liked = ",".join(str(m) for m in rng.sample(movies, 5))
                    r = await c.get(f"/recommend_cold?liked={liked}&k=10")
                else:
                    r = await c.post(
                        "/feedback",
                        json={"user_id": 900_000 + w, "movie_id": rng.choice(movies),
                              "signal": "like"},
                        headers=WRITE,
                    )  # fmt: skip
                kinds[kind].append((time.perf_counter() - t0) * 1000)
                if r.status_code >= 400:
                    errors[kind] += 1
                if "x-model-version" in r.headers:
                    versions.add(r.headers["x-model-version"])

    await asyncio.gather(*(worker(w) for w in range(conns)))
    out: dict[str, Any] = {}
    for k, lat in kinds.items():
        a = np.array(lat) if lat else np.zeros(1)
        out[k] = {"requests": len(lat), "errors": errors[k],
                  "p50_ms": round(float(np.percentile(a, 50)), 2),
                  "p99_ms": round(float(np.percentile(a, 99)), 2)}  # fmt: skip
    out["versions"] = sorted(versions)
    return out


def row_load(home: Path, seconds: float, users: list[int], movies: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"row": "load", "seconds": seconds, "connections": 8}
    for workers in (1, 2):
        api = Api(home, workers).start()
        try:
            out[f"workers_{workers}"] = asyncio.run(_mixed_load(api.url, seconds, 8, users, movies))
        finally:
            api.stop()
    out["errors"] = sum(
        v["errors"]
        for w in ("workers_1", "workers_2")
        for k, v in out[w].items()
        if k != "versions"
    )
    out["passed"] = out["errors"] == 0
    return out


def row_reload(home: Path, swaps: int, users: list[int]) -> dict[str, Any]:
    """Swap between versions under load; every answer must be exactly its version's answer."""
    from movierec.lifecycle.bundle import current_version

    api = Api(home).start()
    expected: dict[str, dict[int, list[int]]] = {}
    probe = users[:20]

    def answers() -> tuple[str, dict[int, list[int]]]:
        with httpx.Client(base_url=api.url, timeout=30) as c:
            got, version = {}, ""
            for u in probe:
                r = c.get(f"/recommend/user/{u}?k=10")
                version = r.headers["x-model-version"]
                got[u] = [i["movie_id"] for i in r.json()["items"]]
            return version, got

    try:
        v0 = current_version(home / "bundles")
        assert v0 is not None
        expected[v0] = answers()[1]
        bad, failed, total, peak = 0, 0, 0, api.rss_mb()
        stop = [False]

        async def load() -> None:
            nonlocal bad, failed, total
            async with httpx.AsyncClient(base_url=api.url, timeout=30) as c:
                i = 0
                while not stop[0]:
                    u = probe[i % len(probe)]
                    i += 1
                    r = await c.get(f"/recommend/user/{u}?k=10")
                    total += 1
                    if r.status_code != 200:
                        failed += 1
                        continue
                    items = [x["movie_id"] for x in r.json()["items"]]
                    # every version is a copy of v0's model: its answers must be v0's exactly
                    if items != expected[v0][u]:
                        bad += 1

        async def swapper() -> list[str]:
            published = []
            for n in range(swaps):
                published.append(republish(home, 1000 + n))
                await asyncio.sleep(0.6)
            stop[0] = True
            return published

        async def both() -> list[str]:
            async def sample() -> None:
                nonlocal peak
                while not stop[0]:
                    peak = max(peak, api.rss_mb())
                    await asyncio.sleep(0.1)

            swaps_task = asyncio.ensure_future(swapper())
            await asyncio.gather(*(load() for _ in range(4)), swaps_task, sample())
            return swaps_task.result()

        published = asyncio.run(both())
        time.sleep(1.0)
        final = httpx.get(f"{api.url}/recommend/user/{probe[0]}?k=10").headers["x-model-version"]
        return {"row": "reload", "swaps": swaps, "requests": total, "failed": failed,
                "half_loaded_answers": bad, "peak_rss_mb": round(peak, 1),
                "serving_latest": final == published[-1],
                "passed": failed == 0 and bad == 0 and final == published[-1]}  # fmt: skip
    finally:
        api.stop()


def row_crash(home: Path, data: Path, kills: int, movies: list[int]) -> dict[str, Any]:
    """kill -9 of the API during feedback writes; of `movierec train` during its publish."""
    from movierec.data.feedback import FeedbackStore
    from movierec.lifecycle.bundle import load_bundle

    acked: list[int] = []
    for round_ in range(kills):
        api = Api(home).start()
        stop_at = time.perf_counter() + 1.0 + random.random()

        async def writer(
            w: int, url: str = api.url, until: float = stop_at, r_: int = round_
        ) -> None:
            async with httpx.AsyncClient(base_url=url, timeout=5) as c:
                i = 0
                while True:
                    try:
                        r = await c.post("/feedback", headers=WRITE, json={
                            "user_id": 800_000 + r_ * 100 + w, "movie_id": movies[i % len(movies)],
                            "signal": "rating", "value": 4.0})  # fmt: skip
                    except httpx.HTTPError:
                        return
                    if r.status_code == 201:
                        acked.append(int(r.json()["id"]))
                    i += 1
                    if time.perf_counter() > until + 5:
                        return

        async def killer(a: Api = api, until: float = stop_at) -> None:
            while time.perf_counter() < until:
                await asyncio.sleep(0.05)
            a.kill9()

        async def run() -> None:
            await asyncio.gather(*(writer(w) for w in range(4)), killer())

        asyncio.run(run())
    store = FeedbackStore.for_settings(home, None)
    try:
        kept = {int(str(e["id"])) for e in store.since(0.0)}
    finally:
        store.close()
    lost = len(set(acked) - kept)

    # trainer killed at random moments (most of a small run is its publish)
    broken = 0
    env = {**os.environ, "MOVIEREC_HOME": str(home), "MOVIEREC_LOG_LEVEL": "WARNING"}
    for n in range(kills):
        proc = subprocess.Popen(
            [str(BIN / "movierec"), "train", "--dataset", str(data), "--model", "popularity",
             "--strategies", "popularity", "--no-evaluate"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(2.0 + 2.5 * random.Random(n).random())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        try:
            load_bundle(home / "bundles")
        except Exception:
            broken += 1
    work = home.parent
    consumer = consumer_crash(work, kills, 20_000 if kills <= 2 else 100_000)
    sched = scheduler_crash(work, kills, kills + 2, 300_000)
    passed = (
        lost == 0
        and broken == 0
        and len(acked) > 0
        and consumer["consumer_lost"] == 0
        and consumer["consumer_duplicated"] == 0
        and consumer["consumer_ok"]
        and sched["half_ingested_files"] == 0
        and sched["processed"] == sched["files"]
        and sched["killed_mid_ingest"] > 0
        and sched["scheduler_ok"]
    )
    return {"row": "crash", "api_kills": kills, "acknowledged": len(acked),
            "acknowledged_lost": lost, "trainer_kills": kills, "half_bundles_current": broken,
            **consumer, **sched, "passed": passed}  # fmt: skip


def _tamper(bundles: Path) -> tuple[str, str]:
    """A copy of the current bundle with one byte of its largest array file flipped."""
    from movierec.lifecycle.bundle import current_version

    good = current_version(bundles)
    assert good is not None
    bad = f"{good.split('-r')[0]}-r9999"
    shutil.copytree(bundles / good, bundles / bad)
    target = max(
        (p for p in (bundles / bad).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return good, bad


def _direct_secret_comparisons() -> tuple[int, int]:
    """(== / != on a configured secret, hmac.compare_digest calls) in the service's source."""
    import ast

    import movierec.service as service

    direct = digests = 0
    secret_words = ("get_secret_value", "admin_token", "api_key", "admin_password", "token")
    for path in Path(service.__file__).parent.rglob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
            ):
                src = ast.get_source_segment(text, node) or ""
                if any(w in src for w in secret_words) and "None" not in src:
                    direct += 1
            if isinstance(node, ast.Attribute) and node.attr == "compare_digest":
                digests += 1
    return direct, digests


def _outside_home(home: Path, work: Path, user: int, movie: int) -> dict[str, Any]:
    """Run the API with HOME, TMPDIR and its working directory empty: they must stay empty."""
    dirs = {name: work / f"outside-{name}" for name in ("home", "tmp", "cwd")}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    env = {"HOME": str(dirs["home"]), "TMPDIR": str(dirs["tmp"])}
    api = Api(home, env=env, cwd=dirs["cwd"]).start()
    try:
        with httpx.Client(base_url=api.url, timeout=30) as c:
            c.get(f"/recommend/user/{user}?k=10&explain=true")
            c.get(f"/recommend_cold?liked={movie}&k=10")
            c.post("/feedback", headers=WRITE, json={"user_id": user, "movie_id": movie,
                                                       "signal": "like"})  # fmt: skip
            c.get(f"/recommend/user/{user}?k=10")
            c.get("/movies/search", params={"q": "a"})
            c.get("/metrics")
            c.get("/model", headers=ADMIN)
            c.post("/admin/reload-model", headers=ADMIN, json={})
    finally:
        api.stop()
    written = [str(p) for d in dirs.values() for p in d.rglob("*")]
    return {"files_written_outside_home": len(written), "outside_examples": written[:5]}


def _cli_traversal(home: Path) -> bool:
    """Traversal through dataset names and --data-dir on the CLI: a message, never a trace."""
    env = {**os.environ, "MOVIEREC_HOME": str(home), "MOVIEREC_LOG_LEVEL": "WARNING"}
    cases = [
        ["train", "--dataset", "../../../../etc", "--model", "popularity", "--no-evaluate"],
        ["train", "--dataset", "ml-latest-small/../../../etc", "--model", "popularity"],
        ["data", "ingest", "../../../etc", "--data-dir", "/etc"],
        ["data", "ingest", "passwd", "--data-dir", "/etc"],
        ["evaluate", "--dataset", "..", "--data-dir", "/", "--models", "popularity"],
    ]
    ok = True
    for args in cases:
        res = subprocess.run([str(BIN / "movierec"), *args], env=env, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        ok &= res.returncode == 2 and "Traceback" not in res.stderr and bool(res.stderr.strip())
    return ok


def row_security(home: Path, movie: int, user: int = 1) -> dict[str, Any]:
    db_url = f"postgresql+psycopg://movierec:{SECRET_PASSWORD}@127.0.0.1:1/none"
    api = Api(home, env={"MOVIEREC_MLFLOW_URI": db_url}).start()
    checks: dict[str, bool] = {}
    try:
        with httpx.Client(base_url=api.url, timeout=30) as c:
            checks["admin without credentials: 401"] = c.get("/model").status_code == 401
            checks["admin with a wrong token: 401/403"] = c.get(
                "/model", headers={"Authorization": "Bearer wrong"}
            ).status_code in (401, 403)
            checks["admin token in the query string: refused"] = c.get(
                f"/model?token={TOKEN}&access_token={TOKEN}"
            ).status_code in (401, 403)
            checks["training endpoints without / with a wrong token: 401/403"] = all(
                s in (401, 403)
                for s in (
                    c.post("/train", json={}).status_code,
                    c.post("/train", json={}, headers={"Authorization": "Bearer x"}).status_code,
                    c.get("/jobs/abc").status_code,
                )
            )
            checks["traversal in job ids: 4xx"] = all(
                400 <= c.get(p, headers=ADMIN).status_code < 500
                for p in ("/jobs/..%2F..%2Fetc%2Fpasswd", "/jobs/%2e%2e", "/jobs/a%00b")
            )
            checks["feedback without the API key: 401"] = (
                c.post(
                    "/feedback", json={"user_id": 1, "movie_id": 1, "signal": "like"}
                ).status_code
                == 401
            )
            injections = ["' OR '1'='1", "1; DROP TABLE movierec_feedback; --", '" OR 1=1 --']
            statuses = []
            for s in injections:
                statuses.append(c.get("/movies/search", params={"q": s}).status_code)
                statuses.append(c.get("/recommend/user/1", params={"strategy": s}).status_code)
                body = {"user_id": 1, "movie_id": movie, "signal": "like", "source": s}
                statuses.append(c.post("/feedback", headers=WRITE, json=body).status_code)
            checks["SQL injection strings: no 5xx"] = all(st < 500 for st in statuses)
            checks["feedback table still answers after them"] = (
                c.post(
                    "/feedback",
                    headers=WRITE,
                    json={"user_id": 2, "movie_id": movie, "signal": "like"},
                ).status_code
                == 201
            )
            trav = [c.post("/admin/reload-model", headers=ADMIN, json={"version": v}).status_code
                    for v in ("../../etc", "..", "/etc/passwd", "a/../../b")]  # fmt: skip
            checks["traversal in bundle versions: 4xx"] = all(400 <= s < 500 for s in trav)
            tr = c.post("/train", headers=ADMIN, json={"dataset": "../../etc"}).status_code
            checks["traversal in dataset names: 4xx"] = 400 <= tr < 500
            big = c.post("/feedback", headers=WRITE, content=b"{" + b" " * 2_000_000 + b"}",
                         ).status_code  # fmt: skip
            checks["oversized body: 413"] = big == 413
            batch = c.post("/recommend/batch", json={"user_ids": list(range(100_000)), "k": 10})
            checks["oversized batch: 422 with the limit"] = (
                batch.status_code == 422 and "limit" in batch.text.lower()
            ) or "at most" in batch.text
            bodies = (
                c.get("/model", headers=ADMIN).text + c.get("/model/status", headers=ADMIN).text
            )
            checks["secret absent from /model"] = SECRET_PASSWORD not in bodies
    finally:
        api.stop()
    log = api.log.read_text(errors="replace")
    checks["secret absent from the log"] = SECRET_PASSWORD not in log and TOKEN not in log
    direct, digests = _direct_secret_comparisons()
    checks["secrets compared in constant time (hmac.compare_digest only)"] = (
        direct == 0 and digests > 0
    )
    checks["traversal in dataset names and --data-dir on the CLI: a message"] = _cli_traversal(home)
    # a tampered bundle: refused at reload (the old one serves), and at load (an older one)
    from movierec.lifecycle.bundle import set_current

    bundles = home / "bundles"
    api = Api(home).start()
    try:
        good, bad = _tamper(bundles)
        set_current(bundles, bad)
        time.sleep(2.0)  # the reload poller runs every 0.2 s
        r = httpx.get(f"{api.url}/recommend/user/{user}?k=10")
        checks["tampered bundle refused at reload, the old one serves"] = (
            r.status_code == 200 and r.headers.get("x-model-version") == good
        )
    finally:
        api.stop()
    api = Api(home).start()
    try:
        r = httpx.get(f"{api.url}/recommend/user/{user}?k=10")
        checks["tampered bundle refused at load, a verified one serves"] = (
            r.status_code == 200 and r.headers.get("x-model-version") not in (None, bad)
        )
    finally:
        api.stop()
        set_current(bundles, good)
        shutil.rmtree(bundles / bad)
    outside = _outside_home(home, home.parent, user, movie)
    checks["the service writes only under MOVIEREC_HOME"] = (
        outside["files_written_outside_home"] == 0
    )
    failed = [k for k, ok in checks.items() if not ok]
    return {"row": "security", "checks": len(checks), "failed": failed, **outside,
            "passed": not failed}  # fmt: skip


def row_resources(home: Path, requests: int, reloads: int, users: list[int]) -> dict[str, Any]:
    api = Api(home).start()
    try:
        with httpx.Client(base_url=api.url, timeout=30) as c:
            for u in users[:50]:
                c.get(f"/recommend/user/{u}?k=10")
        start_rss, start_fds = api.rss_mb(), api.fds()

        async def hammer() -> None:
            async with httpx.AsyncClient(base_url=api.url, timeout=30) as c:
                sem = asyncio.Semaphore(8)

                async def one(i: int) -> None:
                    async with sem:
                        u = users[i % len(users)]
                        if i % 10 == 0:
                            await c.get(f"/recommend_cold?liked={users[0]},{users[1]}&k=10")
                        else:
                            await c.get(f"/recommend/user/{u}?k=10")

                await asyncio.gather(*(one(i) for i in range(requests)))

        asyncio.run(hammer())
        after_requests = api.rss_mb(), api.fds()
        for n in range(reloads):
            v = republish(home, 2000 + n)
            deadline = time.time() + 30
            while time.time() < deadline:
                r = httpx.get(f"{api.url}/recommend/user/{users[0]}?k=10")
                if r.headers.get("x-model-version") == v:
                    break
                time.sleep(0.1)
        time.sleep(1.0)
        after_reloads = api.rss_mb(), api.fds()
    finally:
        api.stop()
    rss_growth = max(after_requests[0], after_reloads[0]) - start_rss
    fd_growth = max(after_requests[1], after_reloads[1]) - start_fds
    bound_mb = 150.0
    return {"row": "resources", "requests": requests, "reloads": reloads,
            "rss_start_mb": round(start_rss, 1),
            "rss_after_requests_mb": round(after_requests[0], 1),
            "rss_after_reloads_mb": round(after_reloads[0], 1), "fds_start": start_fds,
            "fds_after_requests": after_requests[1], "fds_after_reloads": after_reloads[1],
            "rss_bound_mb": bound_mb, "fd_bound": 10,
            "passed": rss_growth <= bound_mb and fd_growth <= 10}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--short", action="store_true", help="The shortened suite of make test.")
    ap.add_argument("--rows", default="fuzzing,load,reload,crash,bad_data,security,resources")
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args(argv)
    short = args.short
    work = Path(tempfile.mkdtemp(prefix="movierec-reliability-"))
    try:
        home = train_home(work, 20_000 if short else 100_000)
        from movierec.lifecycle.bundle import load_bundle

        b = load_bundle(home / "bundles")
        users = [int(u) for u in b.users.ids[:500]]
        movies = [int(m) for m in b.items.ids[:300]]
        results: list[dict[str, Any]] = []
        rows = args.rows.split(",")
        for name in rows:
            t0 = time.perf_counter()
            if name == "fuzzing":
                api = Api(home).start()
                try:
                    r = row_fuzzing(api, work, 5 if short else 50)
                finally:
                    api.stop()
            elif name == "load":
                r = row_load(home, 5 if short else 30, users, movies)
            elif name == "reload":
                r = row_reload(home, 3 if short else 10, users)
            elif name == "crash":
                r = row_crash(home, work / "release", 1 if short else 5, movies)
            elif name == "bad_data":
                api = Api(home).start()
                try:
                    r = row_bad_data(work, api.url, WRITE, home, short, movies)
                finally:
                    api.stop()
            elif name == "security":
                r = row_security(home, movies[0], users[0])
            elif name == "resources":
                r = row_resources(home, 2_000 if short else 100_000, 5 if short else 20, users)
            else:
                raise SystemExit(f"unknown row {name}")
            r["seconds"] = round(time.perf_counter() - t0, 1)
            results.append(r)
            print(_line(r), flush=True)
        out = args.output or HERE / "results" / f"reliability{'-short' if short else ''}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"short": short, "rows": results}, indent=2))
        print(f"wrote {out}")
        return 0 if all(r["passed"] for r in results) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _line(r: dict[str, Any]) -> str:
    skip = {"row", "passed", "seconds"}
    parts = []
    for k, v in r.items():
        if k in skip or k.endswith("_report"):
            continue
        if isinstance(v, dict):
            v = {kk: vv for kk, vv in v.items() if kk != "versions"}
        parts.append(f"{k}={v}")
    return (
        f"{r['row']:10s} {'PASS' if r['passed'] else 'FAIL'}  {r['seconds']:6.1f}s  "
        + "  ".join(parts)
    )


if __name__ == "__main__":
    sys.exit(main())
