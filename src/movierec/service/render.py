"""Turning engine answers into API responses (shared by the routes and the pre-rendering)."""

from __future__ import annotations

from fastapi import Response

from movierec.service.engine import Answer, Engine
from movierec.service.metrics import FALLBACKS
from movierec.service.schemas import ItemOut, RecommendationOut


def headers(engine: Engine) -> dict[str, str]:
    """Provenance headers: the bundle, its data snapshot and its MLflow run."""
    out = {"X-Model-Version": engine.version, "X-Data-Fingerprint": engine.fingerprint}
    if engine.run_id:
        out["X-MLflow-Run"] = engine.run_id
    return out


def json_answer(engine: Engine, body: bytes | str) -> Response:
    """A JSON response with the provenance headers (encoded once per engine)."""
    response = Response(body, media_type="application/json")
    raw = engine.raw_headers
    if raw is None:
        raw = engine.raw_headers = [
            (k.lower().encode(), v.encode()) for k, v in headers(engine).items()
        ]
    response.raw_headers.extend(raw)
    return response


def provenance(response: Response, engine: Engine) -> None:
    """Headers that trace a response to its bundle, data snapshot and MLflow run."""
    response.headers.update(headers(engine))


def out(engine: Engine, ans: Answer, explain: bool) -> RecommendationOut:
    """The response model of an answer (reasons only when asked for)."""
    if ans.fallback:
        FALLBACKS.labels(source=ans.source).inc()
    return RecommendationOut(
        user_id=ans.user_id,
        strategy=ans.strategy,
        source=ans.source,
        fallback=ans.fallback,
        model_version=engine.version,
        unknown_movies=ans.unknown_movies,
        items=[
            ItemOut(**{**vars(i), "reasons": i.reasons if explain else None}) for i in ans.items
        ],
    )
