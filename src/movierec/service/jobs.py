"""Training over the API: one ``movierec train`` at a time, in its own process.

The service never imports training code: ``POST /train`` starts ``python -m movierec train``
(the same ``train_and_publish`` as the CLI, the scheduler and the tests) as a child process
with the service's settings, and keeps each job's record under ``MOVIEREC_HOME/jobs/``: its
request, state, the steps it reached, and the outcome the command writes (version, MLflow run,
promotion decision) or its last error line. Training memory never grows the API process, and
a finished model reaches the service the usual way (``CURRENT`` moves, the poller reloads).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from movierec.errors import MovierecError
from movierec.redact import redact

#: Job ids: 12 hex digits.
JOB_ID = r"^[0-9a-f]{12}$"


class JobRunningError(MovierecError):
    """A training job is already running (one at a time)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"training job {job_id} is still running: one at a time")
        self.job_id = job_id


class UnknownJobError(MovierecError):
    """No job with that id."""


class TrainingJobs:
    """Start, watch and report training jobs (one at a time per home)."""

    def __init__(self, home: Path) -> None:
        self.dir = home / "jobs"
        self.home = home
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def _path(self, job_id: str, suffix: str) -> Path:
        return self.dir / f"{job_id}{suffix}"

    def start(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start ``movierec train`` with ``request`` (dataset, model, strategies, evaluate).

        Raises:
            JobRunningError: Another job is running.
        """
        with self._lock:
            running = self.running()
            if running is not None:
                raise JobRunningError(running)
            self.dir.mkdir(parents=True, exist_ok=True)
            job_id = uuid.uuid4().hex[:12]
            cmd = [
                sys.executable, "-m", "movierec", "train",
                "--dataset", str(request["dataset"]),
                "--model", str(request["model"]),
                "--result-json", str(self._path(job_id, ".result.json")),
                "--progress-file", str(self._path(job_id, ".progress")),
            ]  # fmt: skip
            if request.get("strategies"):
                cmd += ["--strategies", ",".join(request["strategies"])]
            if not request.get("evaluate", True):
                cmd.append("--no-evaluate")
            env = {**os.environ, "MOVIEREC_HOME": str(self.home)}
            log = self._path(job_id, ".log").open("wb")
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            self._procs[job_id] = proc
            record = {
                "id": job_id,
                "state": "running",
                "request": request,
                "created": time.time(),
                "finished": None,
                "pid": proc.pid,
            }
            self._write(record)
            return self.get(job_id)

    def running(self) -> str | None:
        """The id of the running job, if any (finished ones are settled on the way)."""
        for job_id in list(self._procs):
            if self.get(job_id)["state"] == "running":
                return job_id
        return None

    def _write(self, record: dict[str, Any]) -> None:
        tmp = self._path(record["id"], ".json.tmp")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, self._path(record["id"], ".json"))

    def get(self, job_id: str) -> dict[str, Any]:
        """A job's record: state (running, succeeded, failed), steps, outcome or error.

        Raises:
            UnknownJobError: No such job.
        """
        path = self._path(job_id, ".json")
        if not path.exists():
            raise UnknownJobError(f"no training job {job_id}")
        record: dict[str, Any] = json.loads(path.read_text())
        if record["state"] == "running":
            proc = self._procs.get(job_id)
            code = proc.poll() if proc is not None else -1  # -1: the service restarted
            if code is not None:
                self._settle(record, code)
        progress = self._path(job_id, ".progress")
        record["progress"] = progress.read_text().splitlines() if progress.exists() else []
        return record

    def _settle(self, record: dict[str, Any], code: int) -> None:
        job_id = record["id"]
        self._procs.pop(job_id, None)
        result = self._path(job_id, ".result.json")
        record["finished"] = time.time()
        record["returncode"] = code
        if code == 0 and result.exists():
            record["state"] = "succeeded"
            outcome = json.loads(result.read_text())
            record["result"] = {
                k: outcome.get(k)
                for k in ("version", "run_id", "registered_version", "promoted", "decision")
            }
            record["metrics"] = outcome.get("metrics", {})
        else:
            record["state"] = "failed"
            record["error"] = self._last_error(job_id, code)
        self._write(record)

    def _last_error(self, job_id: str, code: int) -> str:
        if code == -1:
            return "the service restarted while this job ran; its outcome is unknown"
        log = self._path(job_id, ".log")
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
        errors = [x for x in lines if x.startswith("error:")] or lines[-1:]
        return redact(errors[-1] if errors else f"exit code {code}")[:500]

    def latest(self) -> dict[str, Any] | None:
        """The most recently started job, if any."""
        if not self.dir.exists():
            return None
        records = [json.loads(p.read_text()) for p in self.dir.glob("*.json") if len(p.name) == 17]
        if not records:
            return None
        return self.get(max(records, key=lambda r: r["created"])["id"])
