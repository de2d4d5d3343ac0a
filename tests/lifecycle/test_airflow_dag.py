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
dag = bag.dags.get("movierec_retrain")
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": list(bag.dags),
    "tasks": sorted(t.task_id for t in dag.tasks) if dag else [],
    "order": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks} if dag else {},
    "commands": {t.task_id: t.bash_command for t in dag.tasks} if dag else {},
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


def test_dag_parses_in_airflow(tmp_path: Path) -> None:
    py = _airflow_python()
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow")}
    res = subprocess.run(
        [str(py), "-c", CHECK, str(DAGS)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["errors"] == {} and out["dags"] == ["movierec_retrain"]
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
