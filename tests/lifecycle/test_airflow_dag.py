"""The Airflow DAG parses in a real Airflow, installed in its own virtualenv (cached)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DAGS = Path(__file__).resolve().parents[2] / "deploy" / "airflow"
VENV = Path(
    os.environ.get("MOVIEREC_AIRFLOW_VENV", Path.home() / ".cache" / "movierec" / "airflow-venv")
)
CHECK = """
import json, sys
from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
def info(dag):
    return {
        "tasks": sorted(t.task_id for t in dag.tasks) if dag else [],
        "order": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks} if dag else {},
        "commands": {t.task_id: t.bash_command for t in dag.tasks} if dag else {},
    }
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dags),
    **info(bag.dags.get("movierec_retrain")),
    "api": info(bag.dags.get("movierec_retrain_api")),
}))
"""


def _airflow_python() -> Path:
    py = VENV / "bin" / "python"
    if not (VENV / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "apache-airflow"], check=True, timeout=1500
        )
        (VENV / ".installed").touch()
    return py


def test_dag_parses_in_airflow(tmp_path: Path, synth_release: Path) -> None:
    py = _airflow_python()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",  # parse our DAGs only
    }
    res = subprocess.run(
        [str(py), "-c", CHECK, str(DAGS)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["errors"] == {} and out["dags"] == ["movierec_retrain", "movierec_retrain_api"]
    assert out["api"]["tasks"] == ["status", "train"]
    assert out["api"]["order"]["train"] == ["status"]
    _run_api_dag(out["api"]["commands"], synth_release, tmp_path)
    assert out["tasks"] == ["ingest_batches", "report", "train"]
    assert out["order"]["ingest_batches"] == ["train"] and out["order"]["train"] == ["report"]
    # the DAG calls the same CLI commands the scheduler runs, and they exist
    for cmd in out["commands"].values():
        words = cmd.split()
        assert words[0] == "movierec"
        sub = [w for w in words[1:3] if not w.startswith("-")]
        help_ = subprocess.run(
            [str(Path(sys.executable).with_name("movierec")), *sub, "--help"],
            capture_output=True,
            text=True,
        )
        assert help_.returncode == 0, (cmd, help_.stderr)


def _run_api_dag(commands: dict[str, str], synth_release: Path, tmp_path: Path) -> None:
    """Run the API DAG's task commands (bash, curl) against a live service, both credentials."""
    from movierec.data.ingest import ingest_source
    from movierec.lifecycle.train import train_and_publish
    from movierec.settings import Settings
    from tests.helpers import TOKEN, Server

    settings = Settings(home=tmp_path / "home")
    ingest_source(str(synth_release), settings)
    train_and_publish(settings, "store", "popularity", strategies=("popularity",), evaluate=False)
    env = {
        "MOVIEREC_ADMIN_USER": "ops",
        "MOVIEREC_ADMIN_PASSWORD": "pa55",
        "MOVIEREC_WARM_CACHE": "false",
    }
    server = Server(settings.home, env=env)
    server.start()
    body = '{"dataset": "store", "model": "popularity", "strategies": ["popularity"]}'
    base = {**os.environ, "MOVIEREC_SERVICE_URL": server.url, "MOVIEREC_DAG_POLL_S": "1"}
    try:
        for auth in (
            {"MOVIEREC_ADMIN_TOKEN": TOKEN},
            {
                "MOVIEREC_ADMIN_TOKEN": "",
                "MOVIEREC_ADMIN_USER": "ops",
                "MOVIEREC_ADMIN_PASSWORD": "pa55",
            },
        ):
            run_env = {**base, **auth, "MOVIEREC_DAG_TRAIN_JSON": body}
            for task in ("train", "status"):
                res = subprocess.run(
                    ["bash", "-c", commands[task]],
                    env=run_env, capture_output=True, text=True, timeout=300,
                )  # fmt: skip
                assert res.returncode == 0, (task, res.stdout[-2000:], res.stderr[-2000:])
            assert '"state": "succeeded"' in res.stdout or '"last_training"' in res.stdout
    finally:
        server.stop()
