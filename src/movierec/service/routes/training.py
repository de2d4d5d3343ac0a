"""Training over the API (admin): start a job, follow it, and the served model's status."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from movierec.redact import redact_any
from movierec.service.deps import AdminDep, EngineDep, StateDep
from movierec.service.jobs import JOB_ID, JobRunningError
from movierec.service.schemas import INPUT, Strategy
from movierec.settings import Settings

router = APIRouter(tags=["training"])


class TrainIn(BaseModel):
    """What to train: like ``movierec train`` (defaults: the scheduler's settings)."""

    model_config = INPUT
    dataset: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="A release name (ml-latest-small, ...) or `store` (default "
        "MOVIEREC_TRAIN_DATASET); never a path.",
    )
    model: Strategy | None = Field(default=None, description="Default strategy of the bundle.")
    strategies: list[Strategy] | None = Field(default=None, max_length=12)
    evaluate: bool = True


@router.post("/train", status_code=202)
async def train(_: AdminDep, state: StateDep, body: TrainIn | None = None) -> dict[str, Any]:
    """Start ``train_and_publish`` as a background job; 409 while another one runs."""
    b = body or TrainIn()
    s = state.settings
    if b.dataset is not None and ".." in b.dataset:
        raise HTTPException(422, detail="dataset must be a release name or `store`")
    request = {
        "dataset": b.dataset or s.train_dataset,
        "model": b.model if b.model and b.model != "mixed" else s.train_model,
        "strategies": [x for x in b.strategies or [] if x != "mixed"],
        "evaluate": b.evaluate,
    }
    try:
        job = state.jobs.start(request)
    except JobRunningError as e:
        raise HTTPException(409, detail={"message": str(e), "running_job": e.job_id}) from e
    return {"job_id": job["id"], "state": job["state"]}


@router.get("/jobs/{job_id}")
async def job(
    _: AdminDep, state: StateDep, job_id: Annotated[str, Path(pattern=JOB_ID)]
) -> dict[str, Any]:
    """A training job: state, steps reached, MLflow run, promotion decision or error."""
    out: dict[str, Any] = redact_any(state.jobs.get(job_id))
    out.pop("pid", None)
    return out


#: How long ``/model/status`` waits for the registry.
REGISTRY_TIMEOUT_S = 3.0
#: Held while a (daemon) thread asks the registry: at most one lookup hangs on a dead server.
_REGISTRY_BUSY = threading.Lock()


def _registry_within(settings: Settings, timeout: float) -> dict[str, Any]:
    """:func:`_registry_aliases` in a daemon thread, given up after ``timeout`` seconds.

    A hung tracking server (MLflow retries a refused connection for minutes) then costs one
    background thread, never a request, and never delays the process's exit.
    """
    if not _REGISTRY_BUSY.acquire(blocking=False):
        return {"error": "the tracking server is still answering an earlier lookup"}
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result.update(_registry_aliases(settings))
        finally:
            _REGISTRY_BUSY.release()

    worker = threading.Thread(target=run, name="movierec-registry", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return {"error": f"the tracking server did not answer within {timeout:g} s"}
    return result


def _registry_aliases(settings: Settings) -> dict[str, Any]:
    """The champion and challenger versions and their bundles (the registry is optional)."""
    try:
        from movierec.lifecycle.tracking import CHALLENGER, CHAMPION, Tracker

        tracker = Tracker(settings)
        registry: dict[str, Any] = {}
        for alias in (CHAMPION, CHALLENGER):
            v = tracker.alias_version(alias)
            tags = tracker.version_tags(v) if v else {}
            registry[alias] = {"version": v, "bundle": tags.get("bundle_version")} if v else None
        return registry
    except Exception as e:  # the registry is optional for serving
        return {"error": type(e).__name__}


@router.get("/model/status")
def model_status(_: AdminDep, state: StateDep, engine: EngineDep) -> dict[str, Any]:
    """The served model, the registry's champion and challenger, and the last training.

    Served: version, strategies, metrics, MLflow run. Last training: the latest job's state,
    steps, outcome or error.
    """
    manifest = engine.bundle.manifest
    registry = _registry_within(state.settings, REGISTRY_TIMEOUT_S)
    last = state.jobs.latest()
    if last is not None:
        last.pop("pid", None)
    return redact_any(
        {
            "served": {
                "version": engine.version,
                "default_strategy": engine.bundle.default_strategy,
                "strategies": sorted(engine.bundle.models),
                "created": manifest.get("created"),
                "metrics": manifest.get("metrics", {}),
                "mlflow_run_id": manifest.get("mlflow_run_id"),
            },
            "registry": registry,
            "last_training": last,
        }
    )
