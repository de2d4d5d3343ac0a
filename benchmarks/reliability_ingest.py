"""Reliability rows about data coming in (used by ``benchmarks/reliability.py``).

* bad data: hypothesis-generated malformed CSV rows, event-log lines and request bodies
  through every ingest path — ``movierec data ingest`` (ratings and event files), the batch
  folder flow (``movierec scheduler``), the Kafka stream (``movierec stream consume`` on a
  real Tansu broker) and ``POST /feedback`` of a live API — each bad row reported with its
  line (or partition offset) and reason, the valid rows kept with exact counts, no crash;
  a file larger than the memory the process may use refused before it is read.
* crashes mid-ingest: ``kill -9`` of the stream consumer mid-batch (restarted: lost and
  duplicated events) and of the scheduler while it ingests landed files (restarted: files
  left half-ingested).

Every generated bad row belongs to a category the validators must reject (a wrong column
count, a non-numeric id, a rating or timestamp out of range, a negative or missing id, bytes
that are not UTF-8, an event line without its fields or with an unknown request), so "every
bad row reported" is an exact set comparison, not a lower bound.
"""

from __future__ import annotations

import json
import os
import random
import signal
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BIN = Path(sys.executable).parent
HEADER = b"userId,movieId,rating,timestamp\n"
TS = 1_600_000_000
T0 = "2024-03-01T10:"
T = TypeVar("T")

_word = st.text(alphabet=string.ascii_letters, min_size=1, max_size=12)
_id = st.integers(1, 2**31 - 1)
_garbage = st.text(
    alphabet=string.ascii_letters + string.digits + "/=.:-_", min_size=1, max_size=40
)

#: Ratings rows every one of which the CSV validator must reject.
BAD_RATING_ROWS = st.one_of(
    st.builds(lambda u, m: f"{u},{m},4.0".encode(), _id, _id),
    st.builds(lambda u, m, w: f"{u},{m},4.0,{TS},{w}".encode(), _id, _id, _word),
    st.builds(lambda w, m: f"{w},{m},4.0,{TS}".encode(), _word, _id),
    st.builds(lambda u, r: f"{u},5,{r},{TS}".encode(), _id, st.integers(6, 10**6)),
    st.builds(lambda u, r: f"{u},5,{r / 10:.1f},{TS}".encode(), _id, st.sampled_from([3, 7, 13])),
    st.builds(lambda u, m, t: f"{u},{m},3.5,{t}".encode(), _id, _id, st.integers(0, 7 * 10**8)),
    st.builds(lambda u, m: f"{u},-{m},4.0,{TS}".encode(), _id, _id),
    st.builds(lambda u: f"{u},,4.0,{TS}".encode(), _id),
    st.builds(lambda u: f"{u}\xff,5,4.0,{TS}".encode("latin-1"), _id),
    _garbage.map(str.encode),
)

#: Event-log lines every one of which the event parser must reject.
BAD_EVENT_LINES = st.one_of(
    _garbage,
    st.builds(lambda w: f"{T0}41:00,{w},GET /rate/5=4", _word),
    st.builds(lambda r: f"{T0}41:00,7,GET /rate/5={r}", st.integers(6, 1000)),
    st.builds(lambda w: f"{T0}42:00,7,GET /nothing/{w}", _word),
    st.builds(lambda w: f"{w},7,GET /rate/5=4", _word),
    st.builds(lambda u: f"{T0}43:00,{u}", _id),
)

#: Request bodies for POST /feedback: anything, as JSON or as raw bytes.
_json_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
)
BODIES = st.one_of(
    st.dictionaries(
        st.sampled_from(["user_id", "movie_id", "signal", "value", "source", "timestamp", "x"]),
        _json_value,
        max_size=6,
    ).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=80),
)


def collect(strategy: st.SearchStrategy[T], n: int) -> list[T]:
    """``n`` examples of a strategy, reproducibly (derandomised hypothesis)."""
    pool: list[T] = []

    @settings(
        max_examples=n,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def take(x: T) -> None:
        pool.append(x)

    take()
    return pool


def _interleave(good: list[T], bad: list[T], seed: int) -> tuple[list[T], set[int]]:
    """Good and bad rows shuffled together; the 0-based positions of the bad ones."""
    rows = [(False, g) for g in good] + [(True, b) for b in bad]
    random.Random(seed).shuffle(rows)
    return [r for _, r in rows], {i for i, (is_bad, _) in enumerate(rows) if is_bad}


def _run(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "movierec"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "MOVIEREC_HOME": str(home), "MOVIEREC_LOG_LEVEL": "WARNING", **extra}


def _ratings_count(home: Path) -> int:
    import pyarrow.parquet as pq

    p = home / "store" / "ratings.parquet"
    return pq.ParquetFile(p).metadata.num_rows if p.exists() else 0


def _check_report(rejects: list[dict[str, Any]], bad_lines: set[int]) -> dict[str, int]:
    reported = {int(r["line"]) for r in rejects}
    return {
        "bad": len(bad_lines),
        "reported": len(reported & bad_lines),
        "unreported": len(bad_lines - reported),
        "good_reported_bad": len(reported - bad_lines),
        "without_reason": sum(1 for r in rejects if not r.get("reason")),
    }


def bad_files(work: Path, examples: int) -> dict[str, Any]:
    """Malformed ratings rows and event lines through `data ingest` and the folder flow."""
    out: dict[str, Any] = {}
    bad = collect(BAD_RATING_ROWS, examples)
    good = [f"{1 + i // 20},{1 + i},{0.5 * (1 + i % 10)},{TS + i}".encode() for i in range(2000)]
    rows, bad_at = _interleave(good, bad, 1)
    data = HEADER + b"\n".join(rows) + b"\n"
    bad_lines = {i + 2 for i in bad_at}  # line 1 is the header
    f = work / "bad" / "ratings-fuzzed.csv"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(data)
    # 1. movierec data ingest
    home = work / "bad" / "home-files"
    rep = work / "bad" / "ingest.json"
    res = _run(["data", "ingest", str(f), "--kind", "ratings", "--max-reject-rate", "1",
                "--report", str(rep)], _env(home))  # fmt: skip
    ok = res.returncode == 0 and rep.exists() and "Traceback" not in res.stderr
    rejects = json.loads(rep.read_text())["reports"][0]["rejects"] if rep.exists() else []
    out["ingest_ratings"] = {
        "crashed": int(not ok),
        **_check_report(rejects, bad_lines),
        "valid": len(good),
        "kept": _ratings_count(home),
    }
    # 2. the batch folder flow
    home = work / "bad" / "home-flow"
    landing = home / "batches" / "landing"
    landing.mkdir(parents=True)
    (landing / f.name).write_bytes(data)
    old = time.time() - 10
    os.utime(landing / f.name, (old, old))
    res = _run(["scheduler", "--once", "--scan-only"], _env(home, MOVIEREC_MAX_REJECT_RATE="1"))
    reports = list((home / "batches" / "processed").glob("*.report.json"))
    rejects = json.loads(reports[0].read_text())["reports"][0]["rejects"] if reports else []
    out["folder_flow"] = {
        "crashed": int(res.returncode != 0 or "Traceback" in res.stderr),
        **_check_report(rejects, bad_lines),
        "valid": len(good),
        "kept": _ratings_count(home),
    }
    # 3. an event log through data ingest --kind events
    bad_ev = collect(BAD_EVENT_LINES, examples)
    good_ev = [f"{T0}{m % 60:02d}:00,{u},GET /data/m/{100 + m}/{m}.mpg" for u in range(1, 41)
               for m in range(25)]  # fmt: skip
    lines, ev_bad_at = _interleave(good_ev, bad_ev, 2)
    ev = work / "bad" / "events-fuzzed.log"
    ev.write_text("\n".join(lines) + "\n")
    home = work / "bad" / "home-events"
    rep = work / "bad" / "events.json"
    res = _run(["data", "ingest", str(ev), "--kind", "events", "--max-reject-rate", "1",
                "--report", str(rep)], _env(home))  # fmt: skip
    summary = json.loads(rep.read_text()) if rep.exists() else {"reports": [{}], "tables": []}
    watches = [t for t in summary["tables"] if t["table"] == "watches"]
    out["ingest_events"] = {
        "crashed": int(res.returncode != 0 or "Traceback" in res.stderr),
        **_check_report(summary["reports"][0].get("rejects", []), {i + 1 for i in ev_bad_at}),
        "valid": len(good_ev),
        "kept": watches[0]["rows_after"] if watches else 0,
    }
    return out


def bad_stream(work: Path, examples: int) -> dict[str, Any]:
    """Malformed event lines through the Kafka stream: rejects by offset, good events stored."""
    from movierec.data.feedback import FeedbackStore
    from movierec.streams.broker import Broker, create_topic
    from movierec.streams.producer import LineProducer

    bad = collect(BAD_EVENT_LINES, examples)
    good = [f"{T0}{m % 60:02d}:00,{u},GET /data/m/{100 + m}/{m}.mpg" for u in range(1, 41)
            for m in range(25)]  # fmt: skip
    lines, bad_at = _interleave(good, bad, 3)
    home = work / "bad" / "home-stream"
    rejects_file = work / "bad" / "stream-rejects.jsonl"
    with Broker(log_file=work / "bad" / "tansu.log") as broker:
        create_topic(broker.bootstrap, "fuzzed", partitions=1)
        p = LineProducer(broker.bootstrap, "fuzzed")
        for line in lines:
            p.send(line)
        sent_ok = p.flush() == 0 and p.failed == 0
        env = _env(home, MOVIEREC_KAFKA_BOOTSTRAP=broker.bootstrap)
        res = _run(["stream", "consume", "--topic", "fuzzed", "--group", "fuzz",
                    "--idle-exit", "3", "--max-reject-rate", "1",
                    "--rejects", str(rejects_file)], env)  # fmt: skip
    rejects = (
        [json.loads(x) for x in rejects_file.read_text().splitlines()]
        if rejects_file.exists()
        else []
    )
    store = FeedbackStore.for_settings(home, None, overlay=False)
    try:
        kept = store.count()
    finally:
        store.close()
    return {
        "crashed": int(res.returncode != 0 or "Traceback" in res.stderr or not sent_ok),
        **_check_report(
            [{"line": r.get("offset", r.get("line")), "reason": r.get("reason")} for r in rejects],
            bad_at,  # one partition: a line's offset is its position
        ),
        "valid": len(good),
        "kept": kept,
    }


def bad_bodies(
    url: str, headers: dict[str, str], home: Path, examples: int, movies: list[int]
) -> dict[str, Any]:
    """Generated request bodies to POST /feedback: 201 or a 4xx with a message, never a 5xx."""
    from movierec.data.feedback import FeedbackStore

    bodies = collect(BODIES, examples)
    store = FeedbackStore.for_settings(home, None, overlay=False)
    try:
        before = store.count()
    finally:
        store.close()
    created, rejected, server_errors, silent = 0, 0, 0, 0
    with httpx.Client(base_url=url, timeout=30) as c:
        for body in bodies:
            r = c.post("/feedback", content=body,
                       headers={**headers, "Content-Type": "application/json"})  # fmt: skip
            if r.status_code >= 500:
                server_errors += 1
            elif r.status_code == 201:
                created += 1
            else:
                rejected += 1
                silent += int("detail" not in r.text)
        good = [
            {"user_id": 700_000 + i, "movie_id": movies[i % len(movies)], "signal": "like"}
            for i in range(50)
        ]
        for g in good:
            created += int(c.post("/feedback", json=g, headers=headers).status_code == 201)
    store = FeedbackStore.for_settings(home, None, overlay=False)
    try:
        after = store.count()
    finally:
        store.close()
    return {"bodies": len(bodies) + len(good), "server_errors": server_errors,
            "rejected_4xx": rejected, "rejected_without_message": silent,
            "created": created, "stored": after - before}  # fmt: skip


def bigger_than_memory(work: Path, short: bool) -> dict[str, Any]:
    """A ratings file larger than the memory the process may use: refused before reading."""
    import numpy as np

    n = 1_000_000 if short else 4_000_000
    rng = np.random.default_rng(5)
    f = work / "bad" / "ratings-big.csv"
    u = rng.integers(1, 100_000, n)
    m = rng.integers(1, 50_000, n)
    r = rng.integers(1, 11, n) / 2
    with f.open("w") as fh:
        fh.write("userId,movieId,rating,timestamp\n")
        for lo in range(0, n, 500_000):
            hi = min(n, lo + 500_000)
            fh.write(
                "".join(
                    f"{a},{b},{c},{TS}\n"
                    for a, b, c in zip(u[lo:hi], m[lo:hi], r[lo:hi], strict=True)
                )
            )
    size = f.stat().st_size
    limit = f"{(200 * 2**20 + size) // 2**20}m"  # well under the ~6x the file an ingest needs
    home = work / "bad" / "home-big"
    res = _run(
        ["data", "ingest", str(f), "--kind", "ratings"], _env(home, MOVIEREC_MEMORY_LIMIT=limit)
    )
    said = res.stderr + res.stdout
    refused = res.returncode == 2 and "would need about" in said and "fit" in said
    landing = home / "batches" / "landing"
    landing.mkdir(parents=True)
    os.link(f, landing / f.name)
    old = time.time() - 10
    os.utime(landing / f.name, (old, old))
    flow = _run(["scheduler", "--once", "--scan-only"], _env(home, MOVIEREC_MEMORY_LIMIT=limit))
    failed = list((home / "batches" / "failed").glob("*.report.json"))
    flow_refused = bool(failed) and "would need about" in failed[0].read_text()
    return {
        "file_mb": round(size / 2**20, 1),
        "memory_limit": limit,
        "ingest_refused_with_message": refused,
        "folder_flow_kept_in_failed": flow_refused and flow.returncode in (0, 1),
        "traceback": int("Traceback" in res.stderr + flow.stderr),
        "stored": _ratings_count(home),
        "message": res.stderr.strip().splitlines()[0][:300] if res.stderr.strip() else "",
    }


def row_bad_data(
    work: Path, url: str, headers: dict[str, str], home: Path, short: bool, movies: list[int]
) -> dict[str, Any]:
    """The bad-data row: every ingest path, crashes 0, rejects exact, valid rows exact."""
    n = 150 if short else 1500
    out: dict[str, Any] = {"row": "bad_data"}
    out |= bad_files(work, n)
    out["stream"] = bad_stream(work, n)
    out["api"] = bad_bodies(url, headers, home, n, movies)
    out["larger_than_memory"] = bigger_than_memory(work, short)
    paths = ("ingest_ratings", "folder_flow", "ingest_events", "stream")
    exact = all(
        out[p]["crashed"] == 0
        and out[p]["unreported"] == 0
        and out[p]["good_reported_bad"] == 0
        and out[p]["without_reason"] == 0
        and out[p]["kept"] == out[p]["valid"]
        for p in paths
    )
    api = out["api"]
    big = out["larger_than_memory"]
    out["crashes"] = sum(out[p]["crashed"] for p in paths) + api["server_errors"] + big["traceback"]
    out["passed"] = (
        exact
        and api["server_errors"] == 0
        and api["rejected_without_message"] == 0
        and api["created"] == api["stored"]
        and api["created"] >= 50
        and big["ingest_refused_with_message"]
        and big["folder_flow_kept_in_failed"]
        and big["traceback"] == 0
        and big["stored"] == 0
    )
    return out


# --------------------------------------------------------------- crashes mid-ingest
def consumer_crash(work: Path, kills: int, events: int) -> dict[str, Any]:
    """kill -9 of `movierec stream consume` mid-batch, ``kills`` times, then a full run."""
    from movierec.data.feedback import FeedbackStore
    from movierec.streams.broker import Broker, create_topic
    from movierec.streams.producer import LineProducer

    lines = [f"{T0}{i % 60:02d}:00,{1 + i // 600},GET /data/m/{1 + i % 600}/{i % 60}.mpg"
             for i in range(events)]  # fmt: skip
    home = work / "crash-consumer"
    with Broker(log_file=work / "tansu-crash.log") as broker:
        create_topic(broker.bootstrap, "crash", partitions=2)
        p = LineProducer(broker.bootstrap, "crash")
        for line in lines:
            p.send(line)
        assert p.flush() == 0
        env = _env(home, MOVIEREC_KAFKA_BOOTSTRAP=broker.bootstrap)
        cmd = [str(BIN / "movierec"), "stream", "consume", "--topic", "crash", "--group", "g",
               "--batch", "2000", "--idle-exit", "4"]  # fmt: skip
        store = FeedbackStore.for_settings(home, None, overlay=False)
        killed_at: list[int] = []
        for k in range(kills):
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            target = (k + 1) * events // (kills + 2)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if store.count() >= target:
                        break
                except Exception:
                    pass
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed_at.append(store.count())
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        stored, physical = store.count(), store.stored_events()
        store.close()
    distinct = len(set(lines))
    return {"consumer_kills": kills, "stored_at_kills": killed_at, "events": distinct,
            "consumer_lost": max(0, distinct - stored),
            "consumer_duplicated": max(0, physical - distinct),
            "consumer_ok": done.returncode == 0}  # fmt: skip


def scheduler_crash(work: Path, kills: int, files: int, rows: int) -> dict[str, Any]:
    """kill -9 of `movierec scheduler` while it ingests landed files; restarted until done."""
    import pyarrow.parquet as pq

    home = work / "crash-scheduler"
    landing = home / "batches" / "landing"
    landing.mkdir(parents=True)
    for i in range(files):
        body = "".join(
            f"{1 + i * 100_000 + j // 50},{1 + j % 50},4.0,{TS + j}\n" for j in range(rows)
        )
        (landing / f"ratings-{i:02d}.csv").write_text("userId,movieId,rating,timestamp\n" + body)
        old = time.time() - 10
        os.utime(landing / f"ratings-{i:02d}.csv", (old, old))
    env = _env(home, MOVIEREC_TRAIN_INTERVAL="100d")
    cmd = [str(BIN / "movierec"), "scheduler", "--scan-every", "0.2"]
    rng = random.Random(9)
    incoming = home / "batches" / "incoming"
    mid_ingest = 0
    for _ in range(kills):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(incoming.glob("*.csv")):
            time.sleep(0.01)  # wait until a file is being ingested
        time.sleep(0.1 * rng.random())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        mid_ingest += int(any(incoming.glob("*.csv")))
    left_incoming = len([p for p in incoming.glob("*") if p.is_file()])
    done = subprocess.run([*cmd[:2], "--once", "--scan-only"], env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    table = pq.read_table(home / "store" / "ratings.parquet", columns=["user_id"])
    users = table.column("user_id").to_numpy()
    half = 0
    for i in range(files):
        n = int(((users > i * 100_000) & (users <= (i + 1) * 100_000)).sum())
        half += int(n != rows)
    processed = len(list((home / "batches" / "processed").glob("*ratings-*.csv")))
    return {"scheduler_kills": kills, "files": files, "killed_mid_ingest": mid_ingest,
            "in_incoming_after_kills": left_incoming,
            "half_ingested_files": half, "processed": processed,
            "scheduler_ok": done.returncode == 0}  # fmt: skip
