"""Training over the API (issue #16): POST /train, GET /jobs/{id}, GET /model/status, and
HTTP Basic as an alternative admin credential."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from movierec.data.ingest import ingest_source
from movierec.service.app import create_app
from movierec.service.routes import training as training_routes
from movierec.settings import Settings
from tests.service.conftest import ADMIN, TOKEN

pytestmark = pytest.mark.slow


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def client(home: Path, synth_release: Path) -> Iterator[TestClient]:
    settings = Settings(
        home=home,
        admin_token=TOKEN,
        admin_user="ops",
        admin_password="pa55-word",
        warm_cache=False,
        reload_poll_s=0.2,
    )
    ingest_source(str(synth_release), settings)
    with TestClient(create_app(settings)) as c:
        yield c


def _wait(c: TestClient, job_id: str, timeout: float = 180) -> dict[str, object]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = c.get(f"/jobs/{job_id}", headers=ADMIN).json()
        if job["state"] != "running":
            return dict(job)
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def test_train_over_the_api_one_at_a_time(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the registry's first lookup opens MLflow's database: seconds on a loaded machine, more
    # than the route's 3 s cap (which is tested apart); this test is about what it reports
    monkeypatch.setattr(training_routes, "REGISTRY_TIMEOUT_S", 60.0)
    before = client.get("/ready").json()["model_version"]
    body = {"dataset": "store", "model": "popularity", "strategies": ["popularity"]}
    r = client.post("/train", json={**body, "evaluate": False}, headers=ADMIN)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    second = client.post("/train", json=body, headers=ADMIN)
    assert second.status_code == 409 and second.json()["detail"]["running_job"] == job_id
    job = _wait(client, job_id)
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert isinstance(result, dict) and result["run_id"] and result["promoted"] is True
    assert "decision" in result and job["progress"] == ["fit popularity", "publish", "register",
                                                         "promote"]  # fmt: skip
    deadline = time.time() + 30  # the poller follows CURRENT
    while client.get("/ready").json()["model_version"] == before and time.time() < deadline:
        time.sleep(0.2)
    status = client.get("/model/status", headers=ADMIN).json()
    assert status["served"]["version"] == result["version"] != before
    assert status["registry"]["champion"]["bundle"] == result["version"]
    assert status["last_training"]["id"] == job_id
    assert status["last_training"]["state"] == "succeeded"


def test_a_failed_job_reports_its_error(client: TestClient) -> None:
    r = client.post("/train", json={"dataset": "no-such-release"}, headers=ADMIN)
    job = _wait(client, r.json()["job_id"])
    assert job["state"] == "failed" and "no-such-release" in str(job["error"])
    assert client.get("/jobs/000000000000", headers=ADMIN).status_code == 404
    assert client.get("/jobs/../../etc", headers=ADMIN).status_code == 404
    bad = client.post("/train", json={"dataset": "../../etc"}, headers=ADMIN)
    assert bad.status_code == 422


def test_training_routes_are_admin_only(client: TestClient) -> None:
    for method, path in (("POST", "/train"), ("GET", "/model/status"), ("GET", "/jobs/a1")):
        assert client.request(method, path).status_code == 401


def test_http_basic_is_an_alternative_admin_credential(client: TestClient) -> None:
    assert client.get("/model", headers=_basic("ops", "pa55-word")).status_code == 200
    assert client.get("/model", headers=_basic("ops", "wrong")).status_code == 403
    assert client.get("/model", headers=_basic("root", "pa55-word")).status_code == 403
    assert client.get("/model", headers={"Authorization": "Basic !!!"}).status_code == 401
    assert client.get("/model", headers={"Authorization": "Basic bm9jb2xvbg=="}).status_code == 401
