from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from movierec.data.feedback import merge_feedback
from movierec.errors import MovierecError, TrainingBusyError
from movierec.lifecycle.bundle import current_version, list_versions, load_bundle
from movierec.lifecycle.promotion import promote, rollback
from movierec.lifecycle.scheduler import Scheduler
from movierec.lifecycle.tracking import CHALLENGER, CHAMPION, RegistryError, Tracker
from movierec.lifecycle.train import one_training, train_and_publish
from movierec.models.popularity import Popularity
from movierec.settings import Settings, parse_interval

FAST = ("popularity", "itemknn")


def _ratings(rows: list[tuple[int, int, float, int]]) -> pa.Table:
    u, m, r, t = zip(*rows, strict=True)
    return pa.table(
        {
            "user_id": pa.array(u, pa.int32()),
            "movie_id": pa.array(m, pa.int32()),
            "rating": pa.array(r, pa.float32()),
            "timestamp": pa.array(t, pa.int64()),
        }
    )


def _pairs(t: pa.Table) -> dict[tuple[int, int], float]:
    return {
        (u, m): r
        for u, m, r in zip(
            t["user_id"].to_pylist(),
            t["movie_id"].to_pylist(),
            t["rating"].to_pylist(),
            strict=True,
        )
    }


def test_merge_feedback_semantics() -> None:
    base = _ratings([(1, 10, 3.0, 100), (1, 11, 4.5, 100), (2, 10, 2.0, 100), (3, 12, 1.0, 5)])
    events: list[dict[str, Any]] = [
        {"user_id": 1, "movie_id": 10, "signal": "like", "value": None, "timestamp": 200},
        {"user_id": 1, "movie_id": 11, "signal": "like", "value": None, "timestamp": 200},
        {"user_id": 2, "movie_id": 10, "signal": "dislike", "value": None, "timestamp": 200},
        {"user_id": 2, "movie_id": 13, "signal": "like", "value": None, "timestamp": 201},
        {"user_id": 3, "movie_id": 12, "signal": "rating", "value": 4.0, "timestamp": 202},
        {"user_id": 4, "movie_id": 10, "signal": "watch", "value": 1.0, "timestamp": 203},
        {"user_id": 4, "movie_id": 11, "signal": "like", "value": None, "timestamp": 204},
        {"user_id": 4, "movie_id": 11, "signal": "dislike", "value": None, "timestamp": 205},
    ]
    merged, counts = merge_feedback(base, events)
    assert merged.schema == base.schema
    assert _pairs(merged) == {
        (1, 10): 4.0,  # like adds weight
        (1, 11): 5.0,  # capped at 5
        (2, 13): 5.0,  # like of an unrated movie
        (3, 12): 4.0,  # rating updates the value
        (4, 10): 3.0,  # watch adds the pair
    }
    assert counts == {"events": 8, "added": 2, "updated": 3, "removed": 1}
    assert merge_feedback(base, [])[0] is base


def test_parse_interval() -> None:
    assert parse_interval("90") == 90 and parse_interval("30m") == 1800
    assert parse_interval("6h") == 21600 and parse_interval("1d") == 86400
    for bad in ("", "x", "-5", "0"):
        with pytest.raises(ValueError):
            parse_interval(bad)


@pytest.fixture
def lc_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", reload_poll_s=0)


def test_train_logs_registers_and_promotes_by_rule(
    lc_settings: Settings, synth_release: Path
) -> None:
    s = lc_settings
    # on this synthetic data popularity is the best model and itemknn a worse one
    first = train_and_publish(s, str(synth_release), "popularity", strategies=FAST)
    assert first.promoted and first.decision["reason"].startswith("first model")
    assert current_version(s.bundles_dir) == first.version
    tracker = Tracker(s)
    run = tracker.client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["data_fingerprint"] == first.fingerprint["sha256"]
    assert run.data.tags["protocol"] == "leave-last-out"
    assert len(run.data.tags["config_hash"]) == 16
    assert "ndcg_at_10" in run.data.metrics and "recall_at_20" in run.data.metrics
    # the training cost of each strategy and its size in the bundle (the model report's rows)
    for name in FAST:
        for key in ("fit_seconds", "fit_cpu_seconds", "fit_peak_rss_mb", "size_in_memory_mb"):
            assert run.data.metrics[f"{name}.{key}"] >= 0
        assert run.data.metrics[f"{name}.size_on_disk_mb"] > 0
    assert run.data.metrics["bundle_size_mb"] > run.data.metrics["itemknn.size_on_disk_mb"]
    assert json.loads(run.data.params["config.itemknn.neighbors"]) == 200
    assert run.data.params["config.popularity.mode"] == "count"
    arts = {a.path for a in tracker.client.list_artifacts(first.run_id, "evaluation")}
    assert arts == {"evaluation/evaluation.json", "evaluation/evaluation.png"}
    assert tracker.alias_version(CHAMPION) == tracker.alias_version(CHALLENGER) == "1"
    manifest = load_bundle(s.bundles_dir).manifest
    assert manifest["mlflow_run_id"] == first.run_id  # provenance: bundle <-> MLflow run

    # a worse challenger is registered but not promoted
    worse = train_and_publish(s, str(synth_release), "itemknn", strategies=FAST)
    assert not worse.promoted
    assert (
        "re-evaluated" in worse.decision["reason"] or "own evaluation" in worse.decision["reason"]
    )
    assert worse.decision["champion_value"] > worse.decision["challenger_value"]
    assert current_version(s.bundles_dir) == first.version
    assert tracker.alias_version(CHAMPION) == "1" and tracker.alias_version(CHALLENGER) == "2"
    tags = tracker.client.get_run(worse.run_id).data.tags
    assert tags["promotion.decision"] == "kept champion"

    # a refresh of the champion's own config ties and (min_improve 0) is promoted
    same = train_and_publish(s, str(synth_release), "popularity", strategies=FAST)
    assert same.promoted and same.decision["champion_value"] == same.decision["challenger_value"]
    # ... but not when an improvement is demanded
    strict = train_and_publish(
        s, str(synth_release), "popularity", strategies=FAST, min_improve=0.01
    )
    assert not strict.promoted
    assert current_version(s.bundles_dir) == same.version

    # manual promotion and rollback move the alias and CURRENT together
    promote(s, "2")
    assert tracker.alias_version(CHAMPION) == "2"
    assert current_version(s.bundles_dir) == worse.version
    version, bundle = rollback(s)
    assert version == "3" and bundle == same.version == current_version(s.bundles_dir)
    rows = {v.version: v for v in tracker.versions()}
    assert "champion" in rows["3"].aliases and "challenger" in rows["4"].aliases
    with pytest.raises(RegistryError):
        promote(s, "99")

    # the registered pyfunc answers recommendations for a frame of user ids
    model = mlflow.pyfunc.load_model(tracker.client.get_model_version("movierec", "2").source)
    users = load_bundle(s.bundles_dir).users.ids[:2].tolist()
    out = model.predict(pd.DataFrame({"user_id": [*users, 987654321]}))
    assert list(out.columns) == ["user_id", "rank", "movie_id", "score", "source"]
    assert len(out) == 30 and set(out["source"]) == {"itemknn", "popularity_fallback"}


def test_a_tracker_that_loses_the_race_to_create_the_experiment_uses_the_winners(
    lc_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two trainers starting at once (the stack's scheduler and a CLI run) share one experiment."""
    first = Tracker(lc_settings)  # the winner created it
    second = Tracker(lc_settings)
    real = second.client.get_experiment_by_name
    calls: list[str] = []

    def not_yet_then_there(name: str) -> Any:  # the loser looked before the winner created it
        calls.append(name)
        return None if len(calls) == 1 else real(name)

    monkeypatch.setattr(second.client, "get_experiment_by_name", not_yet_then_there)
    assert second._experiment(lc_settings) == first.experiment_id
    assert len(calls) == 2


def test_rollback_without_history_is_an_error(lc_settings: Settings) -> None:
    with pytest.raises(RegistryError):
        rollback(lc_settings)


def test_failed_training_changes_nothing(
    lc_settings: Settings, synth_release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = lc_settings
    ok = train_and_publish(s, str(synth_release), "popularity", strategies=("popularity",))

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("fit exploded")

    monkeypatch.setattr(Popularity, "_fit", boom)
    with pytest.raises(RuntimeError, match="fit exploded"):
        train_and_publish(s, str(synth_release), "popularity", strategies=("popularity",))
    assert current_version(s.bundles_dir) == ok.version
    tracker = Tracker(s)
    assert tracker.alias_version(CHAMPION) == "1"
    runs = tracker.client.search_runs([tracker.experiment_id], order_by=["start_time DESC"])
    assert runs[0].info.status == "FAILED"
    assert list_versions(s.bundles_dir) == [ok.version]


PUBLISHER = """
import sys, time, numpy as np
from pathlib import Path
from movierec.data.interactions import InteractionData
from movierec.lifecycle import bundle as b
from movierec.strategies import create
import pyarrow as pa
root = Path(sys.argv[1])
data = InteractionData.from_arrays(np.arange(300) % 30, np.arange(300) % 17,
                                   np.ones(300), np.arange(300))
model = create("popularity").fit(data)
movies = pa.table({"movie_id": pa.array(data.items.ids.astype("int32")),
                   "title": pa.array([str(i) for i in data.items.ids]),
                   "year": pa.array([2000] * len(data.items), pa.int16()),
                   "genres": pa.array([[]] * len(data.items), pa.list_(pa.string()))})
real = b.file_digest
def slow(path):  # give the killer a window inside the publish
    time.sleep(0.02)
    return real(path)
b.file_digest = slow
print("ready", flush=True)
while True:
    b.publish_bundle(root, {"popularity": model}, data.users, data.items, movies,
                     default_strategy="popularity", fingerprint={"sha256": "ab" * 32},
                     retention=3)
"""


def test_kill_during_publish_leaves_a_whole_bundle(tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    script = tmp_path / "publisher.py"
    script.write_text(PUBLISHER)
    rng = np.random.default_rng(0)
    seen: set[str] = set()
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(root)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        cur = current_version(root)
        if cur is not None:
            bundle = load_bundle(root)  # verifies every checksum: never a half bundle
            assert bundle.version == cur
            seen.add(cur)
    assert seen, "no publish completed in the kill windows"


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    old = time.time() - 5
    os.utime(path, (old, old))


def test_batch_folder_flow(lc_settings: Settings, synth_release: Path) -> None:
    s = lc_settings.model_copy(update={"max_reject_rate": 0.1})
    sched = Scheduler(s)
    landing = sched.folders["landing"]
    shutil.copy(synth_release / "ratings.csv", landing / "ratings.csv")
    os.utime(landing / "ratings.csv", (time.time() - 5, time.time() - 5))
    good = "userId,movieId,rating,timestamp\n" + "".join(
        f"{900000 + i},{m},4.0,1700000000\n" for i, m in enumerate([1, 2, 3])
    )
    bad = "userId,movieId,rating,timestamp\n1,1,4.0,1700000000\n2,2,9.5,x\n3,oops,4.0,1\n"
    _write(landing / "ratings-good.csv", good)
    _write(landing / "ratings-bad.csv", bad)
    (landing / "ratings-fresh.csv").write_text(good)  # still being written: left for later
    outcomes = {o.name: o for o in sched.scan()}
    assert outcomes["ratings.csv"].status == "processed"
    assert outcomes["ratings-good.csv"].status == "processed"
    bad_out = outcomes["ratings-bad.csv"]
    assert bad_out.status == "failed" and "rejected" in bad_out.detail["error"]
    assert "ratings-fresh.csv" not in outcomes
    assert [p.name for p in landing.iterdir()] == ["ratings-fresh.csv"]
    assert not list(sched.folders["incoming"].iterdir())
    failed = sorted(p.name for p in sched.folders["failed"].iterdir())
    assert any(n.endswith("ratings-bad.csv") for n in failed)
    assert any(n.endswith(".rejects.jsonl") for n in failed)
    report = json.loads(bad_out.report.read_text())
    rejects = report["report"]["rejects"]
    assert {r["line"] for r in rejects} == {3, 4} and all(r["reason"] for r in rejects)
    processed = sorted(p.name for p in sched.folders["processed"].iterdir())
    assert sum(n.endswith(".report.json") for n in processed) == 2
    # the store holds the good rows only, and scheduled training reads it
    result = sched.retrain()
    assert result is not None and result.promoted
    bundle = load_bundle(s.bundles_dir)
    assert 900000 in bundle.users and 1 not in set(bundle.users.ids.tolist()) - set(
        bundle.users.ids.tolist()
    )
    # a failing retrain is recorded and does not stop the next one
    sched.train_kwargs = {"protocol": "no-such-protocol"}
    assert sched.retrain() is None and sched.runs[-1]["status"] == "failed"
    sched.train_kwargs = {}
    assert sched.retrain() is not None


def test_store_tables_carry_links(lc_settings: Settings, synth_release: Path) -> None:
    from movierec.data.ingest import ingest_release
    from movierec.data.store import open_store
    from movierec.data.tables import load_tables

    ingest_release(open_store(lc_settings), synth_release)
    tables = load_tables("store", lc_settings)
    assert tables.links is not None and tables.movies is not None
    assert tables.links.num_rows == tables.movies.num_rows


def test_store_training_needs_ingested_data(lc_settings: Settings) -> None:
    with pytest.raises(MovierecError, match="data ingest"):
        train_and_publish(lc_settings, "store", "popularity", strategies=("popularity",))


def test_a_file_left_in_incoming_by_a_killed_scheduler_is_ingested_once(
    lc_settings: Settings,
) -> None:
    """A scheduler killed mid-ingest leaves its file in incoming/: the next one finishes it."""
    from movierec.data.store import open_store

    sched = Scheduler(lc_settings)
    rows = "".join(f"{700000 + i},{1 + i % 7},4.0,{1700000000 + i}\n" for i in range(50))
    text = "userId,movieId,rating,timestamp\n" + rows
    half = sched.folders["incoming"] / "20260101T000000-ratings-part.csv"
    half.write_text(text)
    # the crash came after part of the file was merged: the same rows again must add nothing
    from movierec.data.ingest import ingest_file

    store = open_store(lc_settings)
    ingest_file(store, half, "ratings")
    before = store.count("ratings")
    _write(sched.folders["landing"] / "ratings-next.csv", text.replace("4.0", "3.0"))
    outcomes = {o.name: o for o in Scheduler(lc_settings).scan()}
    assert outcomes["ratings-part.csv"].status == "processed"
    assert outcomes["ratings-next.csv"].status == "processed"
    assert not list(sched.folders["incoming"].iterdir())
    assert store.count("ratings") == before == 50


_HOLD = """import sys, time
from pathlib import Path
from movierec.lifecycle.train import one_training
with one_training(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline() if sys.argv[2] == "line" else time.sleep(60)
"""


def _holder(home: Path, until: str) -> subprocess.Popen[str]:
    """A process holding ``home``'s training lock until a line on stdin or a kill."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(home), until],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_one_training_per_home_across_processes(lc_settings: Settings, synth_release: Path) -> None:
    home = lc_settings.home
    holder = _holder(home, "line")  # another process (a CLI training, say) holds the lock
    assert holder.stdin is not None
    try:
        # the scheduler skips its turn (and says why) instead of racing for the registry
        sched = Scheduler(lc_settings, dataset=str(synth_release), strategies=FAST)
        assert sched.retrain() is None
        last = sched.runs[-1]
        assert last["status"] == "skipped" and "another training" in last["reason"]
        with pytest.raises(TrainingBusyError):
            train_and_publish(lc_settings, str(synth_release), "popularity", wait=False)
        assert not list(lc_settings.bundles_dir.glob("*/manifest.json"))  # nothing written
        # a waiting training starts as soon as the holder is done
        entered = threading.Event()

        def wait_turn() -> None:
            with one_training(home):
                entered.set()

        waiter = threading.Thread(target=wait_turn)
        waiter.start()
        assert not entered.wait(0.5)
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert entered.wait(10)
        waiter.join()
    finally:
        holder.kill()
        holder.wait()
    # a holder killed mid-training leaves no lock behind: the next turn trains
    killed = _holder(home, "sleep")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert sched.retrain() is not None and sched.runs[-1]["status"] == "ok"
