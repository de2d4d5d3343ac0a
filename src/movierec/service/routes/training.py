"""Training over the API (admin): start a job, follow it, and the served model's status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from movierec.redact import redact_any
from movierec.service.deps import AdminDep, EngineDep, StateDep
from movierec.service.jobs import JOB_ID, JobRunningError
from movierec.service.schemas import INPUT, Strategy

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


@router.get("/model/status")
def model_status(_: AdminDep, state: StateDep, engine: EngineDep) -> dict[str, Any]:
    """The served model, the registry's champion and challenger, and the last training.

    Served: version, strategies, metrics, MLflow run. Last training: the latest job's state,
    steps, outcome or error.
    """
    manifest = engine.bundle.manifest
    registry: dict[str, Any] = {}
    try:
        from movierec.lifecycle.tracking import CHALLENGER, CHAMPION, Tracker

        tracker = Tracker(state.settings)
        for alias in (CHAMPION, CHALLENGER):
            v = tracker.alias_version(alias)
            tags = tracker.version_tags(v) if v else {}
            registry[alias] = {"version": v, "bundle": tags.get("bundle_version")} if v else None
    except Exception as e:  # the registry is optional for serving
        registry = {"error": type(e).__name__}
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
