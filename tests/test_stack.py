"""The deployment's topology as local processes: up, event -> store -> retrain -> served, down."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from movierec.data.synthetic import SynthConfig, generate
from movierec.lifecycle.bundle import BundleError, load_bundle
from movierec.streams.broker import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("stack", ROOT / "deploy" / "stack.py")
assert _spec is not None and _spec.loader is not None
STACK = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(STACK)


def _stack(env: dict[str, str], *args: str, timeout: float = 400) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "stack.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def _wait(what: str, check: object, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    data = tmp_path / "synth"
    generate(data, SynthConfig(ratings=6_000, seed=5))
    tag = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOVIEREC_")}
    env |= {
        "MOVIEREC_HOME": str(tmp_path / "home"),
        "STACK_DATABASE": f"movierec_stack_{tag}",
        "STACK_MLFLOW_DATABASE": f"movierec_stack_mlflow_{tag}",
        "STACK_DATASET": str(data),
        "STACK_API_PORT": str(free_port()),
        "STACK_UI_PORT": str(free_port()),
        "STACK_MLFLOW_PORT": str(free_port()),
        "STACK_BROKER_PORT": str(free_port()),
        "STACK_CONSUMER_METRICS_PORT": str(free_port()),
        "MOVIEREC_KAFKA_TOPIC": f"events-{tag}",
        "MOVIEREC_TRAIN_INTERVAL": "15s",
        "MOVIEREC_RANKER_COMPILE": "false",
    }
    yield env
    _stack(env, "down", "--purge")


def test_stack_up_event_to_retrain_to_served_then_down(stack_env: dict[str, str]) -> None:
    env = stack_env
    _stack(env, "up")
    api = f"http://127.0.0.1:{env['STACK_API_PORT']}"
    pid = int((Path(env["MOVIEREC_HOME"]) / "run" / "honcho.pid").read_text())
    tree = STACK.descendants(pid)
    procs = "\n".join(tree.values())
    for component in (
        "stream broker",
        "mlflow server",
        "movierec serve",
        "movierec ui",
        "movierec scheduler",
        "stream consume",
    ):
        assert component in procs, procs
    assert httpx.get(f"http://127.0.0.1:{env['STACK_MLFLOW_PORT']}/health").is_success
    assert httpx.get(f"http://127.0.0.1:{env['STACK_UI_PORT']}/").is_success
    metrics = httpx.get(f"http://127.0.0.1:{env['STACK_CONSUMER_METRICS_PORT']}/metrics").text
    assert "movierec_stream" in metrics
    first = httpx.get(f"{api}/recommend/user/1?k=5")
    assert first.status_code == 200
    v1 = first.headers["x-model-version"]

    # an event for a user the served model has never seen: through Kafka into the store
    new_user = 987_654
    events = Path(env["MOVIEREC_HOME"]) / "events.log"
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    events.write_text("".join(f"{now},{new_user},GET /rate/{m}=5\n" for m in (1, 2, 3, 4, 5)))
    produce_env = env | {
        "MOVIEREC_KAFKA_BOOTSTRAP": f"127.0.0.1:{env['STACK_BROKER_PORT']}",
        "MOVIEREC_KAFKA_TOPIC": env["MOVIEREC_KAFKA_TOPIC"],
    }
    res = subprocess.run(
        [str(Path(sys.executable).parent / "movierec"), "stream", "produce", "--file", str(events)],
        env=produce_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr

    def live() -> bool:
        body = httpx.get(f"{api}/recommend/user/{new_user}?k=5").json()
        return bool(body["source"] == "ease_foldin")

    _wait("the streamed ratings in the live answer", live, 60)

    # the scheduler retrains on the store (streamed ratings included), promotes, publishes;
    # the API reloads (a run that started before the events were stored does not have them:
    # wait for the next one)
    bundles = Path(env["MOVIEREC_HOME"]) / "bundles"

    def trained_on_the_stream() -> bool:
        r = httpx.get(f"{api}/recommend/user/{new_user}?k=5")
        version = r.headers.get("x-model-version", v1)
        if r.status_code != 200 or version == v1 or r.json()["fallback"]:
            return False
        try:  # the version that answered (retrains go on, old versions are pruned)
            served = load_bundle(bundles, version)
        except BundleError:
            return False
        return int(served.users.index([new_user])[0]) >= 0

    _wait(
        "a retrained, promoted and served model with the streamed user", trained_on_the_stream, 240
    )
    bundle = load_bundle(bundles)
    assert bundle.version != v1
    manifest = json.loads((Path(bundle.path) / "manifest.json").read_text())
    assert manifest.get("mlflow_run_id")

    _stack(env, "down")
    assert not STACK.alive([pid, *tree]), "processes of the stack left running"
    for key in ("STACK_API_PORT", "STACK_UI_PORT", "STACK_MLFLOW_PORT", "STACK_BROKER_PORT"):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(env[key]))) != 0
