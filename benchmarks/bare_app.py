"""The baseline of bench_service: a bare FastAPI endpoint returning a constant list."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()
ITEMS: list[dict[str, Any]] = [
    {
        "movie_id": 1000 + i,
        "title": f"Movie {i} (1999)",
        "year": 1999,
        "genres": ["Drama"],
        "score": 1.0 - i / 100,
        "source": "constant",
        "reasons": None,
    }
    for i in range(10)
]


@app.get("/recommend/user/{user_id}")
async def recommend(user_id: int, k: int = 10) -> dict[str, Any]:
    """The same response shape as movierec's, without any work."""
    return {
        "user_id": user_id,
        "strategy": "constant",
        "source": "constant",
        "fallback": False,
        "model_version": "bare",
        "items": ITEMS[:k],
        "unknown_movies": [],
    }


@app.get("/ready")
async def ready() -> dict[str, bool]:
    """Readiness."""
    return {"ready": True}
