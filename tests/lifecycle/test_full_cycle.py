"""The whole lifecycle on real ml-latest-small against a real MLflow server (PostgreSQL store)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from movierec.lifecycle.bundle import current_version, load_bundle
from movierec.lifecycle.promotion import rollback
from movierec.lifecycle.scheduler import Scheduler
from movierec.lifecycle.tracking import CHAMPION, Tracker
from movierec.lifecycle.train import train_and_publish
from movierec.service.app import create_app
from movierec.settings import Settings
from tests.helpers import _free_port, wait_for, wait_until_ok

pytestmark = [pytest.mark.slow, pytest.mark.db]

PG = "postgresql://postgres@127.0.0.1:5432"
TOKEN = "cycle-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` with its backend store in a fresh PostgreSQL database."""
    db = f"mlflow_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as con:
        con.execute(f"CREATE DATABASE {db}")
    port = _free_port()
    arts = tmp_path_factory.mktemp("mlflow-artifacts")
    log = (tmp_path_factory.mktemp("mlflow-log") / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}",
            "--artifacts-destination",
            arts.as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ok(f"{url}/health", proc, timeout=120, every=0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as con:
            con.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_full_cycle(mlflow_server: str, data_dir: Path, tmp_path: Path) -> None:
    s = Settings(
        home=tmp_path / "home",
        data_dir=data_dir,
        mlflow_uri=mlflow_server,
        admin_token=TOKEN,
        reload_poll_s=0.3,
        warm_cache=False,
        train_dataset="ml-latest-small",
        train_model="itemknn",
    )
    strategies = ("popularity", "itemknn")
    v1 = train_and_publish(s, "ml-latest-small", "itemknn", strategies=strategies)
    assert v1.promoted
    tracker = Tracker(s)
    assert tracker.uri == mlflow_server and tracker.alias_version(CHAMPION) == "1"

    with TestClient(create_app(s)) as client:
        model = client.get("/model", headers=ADMIN).json()
        assert model["version"] == v1.version and model["mlflow_run_id"] == v1.run_id
        # feedback arrives through the API
        user = 1
        before = client.get(f"/recommend/user/{user}?k=20")
        assert before.headers["X-MLflow-Run"] == v1.run_id
        liked = [i["movie_id"] for i in before.json()["items"][:5]]
        for m in liked:
            r = client.post("/feedback", json={"user_id": user, "movie_id": m, "signal": "like"})
            assert r.status_code == 201
        r = client.post("/feedback", json={"user_id": 999_001, "movie_id": 1, "signal": "like"})
        assert r.status_code == 201

        # the scheduler retrains with the feedback; the rule decides; the service reloads
        sched = Scheduler(s, strategies=strategies)
        v2 = sched.retrain()
        assert v2 is not None and v2.feedback["events"] == 6 and v2.feedback["added"] == 6
        assert v2.fingerprint["sha256"] != v1.fingerprint["sha256"]
        run = tracker.client.get_run(v2.run_id)
        assert run.data.tags["promotion.decision"] in ("promoted", "kept champion")
        assert run.data.metrics["challenger_value"] == pytest.approx(
            v2.decision["challenger_value"]
        )
        assert v2.promoted  # same config on fresher data ties, min_improve 0: deployed
        wait_for(lambda: client.get("/model", headers=ADMIN).json()["version"] == v2.version)
        resp = client.get(f"/recommend/user/{user}?k=5")
        assert resp.headers["X-Model-Version"] == v2.version
        assert resp.headers["X-MLflow-Run"] == v2.run_id
        # provenance agrees with MLflow: the run names the bundle the service answers from
        assert tracker.client.get_run(v2.run_id).data.tags["bundle_version"] == v2.version
        assert 999_001 in load_bundle(s.bundles_dir).users  # the new user's like was learned

        # a challenger that must improve by a whole point is kept out
        v3 = train_and_publish(
            s, "ml-latest-small", "itemknn", strategies=strategies, min_improve=1.0
        )
        assert not v3.promoted and current_version(s.bundles_dir) == v2.version

        # rollback brings v1 back and the service serves it
        version, bundle = rollback(s)
        assert version == "1" and bundle == v1.version
        wait_for(lambda: client.get("/model", headers=ADMIN).json()["version"] == v1.version)
        assert client.get("/recommend/user/2?k=3").headers["X-MLflow-Run"] == v1.run_id
        assert tracker.alias_version(CHAMPION) == "1"
