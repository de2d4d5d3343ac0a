"""A planted secret never leaves the process (issue #19).

Every credential-bearing setting holds a unique marker: the store's and MLflow's database URLs
carry it as their password (PostgreSQL here trusts local connections, so the password is not
needed, only carried), the admin token and the API key contain it. Then data is ingested,
a model trained, logged, registered and served, every route of the OpenAPI schema is called
anonymously and as admin, and the web app's status page is rendered over HTTP. The marker
must appear in none of: the logs, the manifest, the MLflow run, any answer, the web page.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from movierec.data.ingest import ingest_source
from movierec.lifecycle.tracking import Tracker
from movierec.lifecycle.train import train_and_publish
from movierec.settings import Settings
from tests.helpers import Server

pytestmark = pytest.mark.slow
PG = "postgresql://postgres@127.0.0.1:5432"
MARK = f"planted{uuid.uuid4().hex[:12]}"
APP = str(Path(__file__).resolve().parents[2] / "src" / "movierec" / "ui" / "app.py")


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    names = (f"store_{uuid.uuid4().hex[:8]}", f"mlflow_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as con:
        for n in names:
            con.execute(f"CREATE DATABASE {n}")
    yield names
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as con:
        for n in names:
            con.execute(f"DROP DATABASE IF EXISTS {n} WITH (FORCE)")


def test_a_planted_secret_appears_nowhere(
    databases: tuple[str, str],
    synth_release: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store_db, mlflow_db = databases
    env = {
        "MOVIEREC_HOME": str(tmp_path / "home"),
        "MOVIEREC_DATABASE_URL": f"postgresql+psycopg://postgres:{MARK}a@127.0.0.1:5432/{store_db}",
        "MOVIEREC_MLFLOW_URI": f"postgresql+psycopg://postgres:{MARK}b@127.0.0.1:5432/{mlflow_db}",
        "MOVIEREC_ADMIN_TOKEN": f"{MARK}-admin",
        "MOVIEREC_API_KEY": f"{MARK}-key",
        "MOVIEREC_WARM_CACHE": "false",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    caplog.set_level(logging.DEBUG)
    settings = Settings()
    ingest_source(str(synth_release), settings)
    result = train_and_publish(
        settings, "store", "itemknn", strategies=("popularity", "itemknn"), seed=1
    )
    manifest = (settings.bundles_dir / result.version / "manifest.json").read_text()
    assert MARK not in manifest
    assert "postgres:***@" in manifest  # the tracking URI is recorded, redacted
    run = Tracker(settings).client.get_run(str(result.run_id))
    assert MARK not in repr(run.data.params) + repr(run.data.tags)

    server = Server(settings.home, env={"MOVIEREC_ADMIN_TOKEN": f"{MARK}-admin"})
    server.start()
    try:
        admin = {"Authorization": f"Bearer {MARK}-admin"}
        texts = _call_every_route(server.url, admin)
        monkeypatch.setenv("MOVIEREC_API_URL", server.url)
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.sidebar.radio(key="page").set_value("System status").run()
        assert not at.exception
        page = repr([e.value for e in at.main if hasattr(e, "value")])
        assert any(s.value.startswith("Model ") for s in at.subheader)
    finally:
        server.stop()
        stderr = server.proc.stderr.read().decode() if server.proc and server.proc.stderr else ""
    for name, text in [*texts, ("web page", page), ("service log", stderr)]:
        assert MARK not in text, name
    assert MARK not in caplog.text


def _call_every_route(url: str, admin: dict[str, str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    with httpx.Client(base_url=url, timeout=60) as c:
        schema = c.get("/openapi.json").json()
        movie = c.get("/popular?k=1").json()[0]["movie_id"]
        for path, ops in schema["paths"].items():
            concrete = path.replace("{user_id}", "1").replace("{movie_id}", str(movie))
            for method in ops:
                body = None
                if method == "post":
                    body = {
                        "/feedback": {"user_id": 1, "movie_id": movie, "signal": "like"},
                        "/recommend/batch": {"user_ids": [1, 2], "k": 3},
                        "/recommend/session": {"liked": [movie], "k": 3},
                    }.get(path, {})
                params = {"q": "a", "liked": str(movie), "user_id": 1, "movie_id": movie}
                for headers in ({}, admin, {"X-API-Key": f"{MARK}-key"}):
                    r = c.request(method, concrete, json=body, params=params, headers=headers)
                    assert r.status_code < 500, (path, r.text)
                    out.append((f"{method} {path}", r.text + repr(dict(r.headers))))
        out.append(("metrics", c.get("/metrics").text))
    return out
