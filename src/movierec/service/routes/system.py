"""Health, readiness, feedback, admin and metrics."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from movierec.lifecycle.bundle import BundleError
from movierec.redact import redact_any
from movierec.service.deps import AdminDep, EngineDep, StateDep, WriterDep
from movierec.service.metrics import MODEL_INFO, REGISTRY
from movierec.service.schemas import FeedbackIn, FeedbackOut, ReloadIn

router = APIRouter()


@router.get("/health", tags=["system"])
async def health(state: StateDep) -> dict[str, Any]:
    """Liveness: the process answers."""
    return {"status": "ok", "uptime_s": round(time.time() - state.started, 3)}


@router.get("/ready", tags=["system"])
async def ready(state: StateDep, response: Response) -> dict[str, Any]:
    """Readiness: a model is loaded (503 otherwise)."""
    e = state.engine
    if e is None:
        response.status_code = 503
        return {"ready": False, "reason": state.last_error or "starting"}
    return {
        "ready": True,
        "model_version": e.version,
        "users": len(e.bundle.users),
        "items": len(e.bundle.items),
        "strategies": sorted(e.bundle.models),
        "default_strategy": e.bundle.default_strategy,
        "warming": state.warming,
        "compiling": state.compiling,
        "uptime_s": round(time.time() - state.started, 3),
    }


@router.post("/feedback", response_model=FeedbackOut, status_code=201, tags=["feedback"])
def feedback(_: WriterDep, body: FeedbackIn, state: StateDep, engine: EngineDep) -> FeedbackOut:
    """Store one event durably (before answering), then it shapes the user's next list.

    Needs ``X-API-Key`` (or the admin token) when ``MOVIEREC_API_KEY`` is set.
    """
    engine.catalog.movie(body.movie_id)  # 404 for a movie not in the catalog
    new_id = state.feedback.add(
        body.user_id, body.movie_id, body.signal, body.value, body.source, body.timestamp
    )
    engine.forget_users([body.user_id])  # other workers: their stream/feedback refresh does it
    return FeedbackOut(id=new_id, user_id=body.user_id, movie_id=body.movie_id, signal=body.signal)


@router.post("/admin/reload-model", tags=["admin"])
def reload_model(_: AdminDep, state: StateDep, body: ReloadIn | None = None) -> dict[str, Any]:
    """Load a bundle fully, verify it, then swap; a bad bundle is refused and the old one serves.

    Naming a ``version`` pins it: it becomes ``CURRENT`` too, so the poller, other workers and
    restarts follow it. Without one, whatever ``CURRENT`` names is loaded.
    """
    old = state.engine.version if state.engine else None
    try:
        engine = state.pin(body.version) if body and body.version else state.load()
    except BundleError as e:
        raise HTTPException(409, detail=f"reload refused, still serving {old}: {e}") from e
    MODEL_INFO.info({"version": engine.version})
    return {"reloaded": True, "previous_version": old, "model_version": engine.version}


@router.get("/model", tags=["admin"])
async def model(_: AdminDep, engine: EngineDep) -> dict[str, Any]:
    """The manifest of the served bundle (version, configs, data fingerprint, metrics); admin."""
    out: dict[str, Any] = redact_any(
        {k: v for k, v in engine.bundle.manifest.items() if k != "files"}
    )
    return out


@router.get("/debug/model-shapes", tags=["admin"])
def model_shapes(_: AdminDep, engine: EngineDep) -> dict[str, Any]:
    """Array shapes of every model in the bundle."""
    out: dict[str, Any] = {}
    for name, m in engine.bundle.models.items():
        out[name] = {k: list(v.shape) for k, v in m._arrays().items()}
        out[name]["history"] = [m.n_users, m.n_items, int(m.history.nnz)]
    return out


@router.get("/metrics", tags=["system"], include_in_schema=False)
def metrics() -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
