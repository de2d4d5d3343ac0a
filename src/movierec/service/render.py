"""Turning engine answers into API responses (shared by the routes and the pre-rendering)."""

from __future__ import annotations

from typing import Any

import pydantic_core
from fastapi import Response

from movierec.service.engine import Answer, Engine
from movierec.service.metrics import FALLBACKS
from movierec.service.schemas import RecommendationOut


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


def fields(engine: Engine, ans: Answer, explain: bool) -> dict[str, Any]:
    """A response's fields in :class:`RecommendationOut`'s order (reasons only when asked for).

    Plain Python values (the catalog's ints, strings and lists, the scores as floats): what
    :func:`out` validates and :func:`out_json` writes as they are.
    """
    if ans.fallback:
        FALLBACKS.labels(source=ans.source).inc()
    return {
        "user_id": ans.user_id,
        "strategy": ans.strategy,
        "source": ans.source,
        "fallback": ans.fallback,
        "model_version": engine.version,
        "items": [
            {
                "movie_id": i.movie_id,
                "title": i.title,
                "year": i.year,
                "genres": i.genres,
                "score": i.score,
                "source": i.source,
                "reasons": i.reasons if explain else None,
            }
            for i in ans.items
        ],
        "unknown_movies": ans.unknown_movies,
    }


def out(engine: Engine, ans: Answer, explain: bool) -> RecommendationOut:
    """The response model of an answer (reasons only when asked for)."""
    return RecommendationOut.model_validate(fields(engine, ans, explain))


def out_json(engine: Engine, ans: Answer, explain: bool) -> bytes:
    """``out(engine, ans, explain).model_dump_json()``, the same bytes without the models.

    The per-request answers' rendering on the event loop: 9 µs instead of 28 for ten items
    (the equality is tested for every kind of answer).
    """
    return pydantic_core.to_json(fields(engine, ans, explain))
