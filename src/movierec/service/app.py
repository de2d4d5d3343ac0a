"""The FastAPI application factory: lifespan, middleware, error mapping, routers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from movierec import __version__
from movierec.errors import InvalidDataError, MovierecError
from movierec.lifecycle.bundle import BundleError
from movierec.service.engine import UnknownMovieError, UnknownStrategyError
from movierec.service.feedback import FeedbackStore
from movierec.service.metrics import LATENCY, MODEL_INFO, REQUESTS
from movierec.service.routes import catalog, recommend, system
from movierec.service.state import ServiceState
from movierec.settings import Settings, get_settings

access_log = logging.getLogger("movierec.access")

#: Typed errors -> HTTP status, in one place.
ERROR_STATUS: dict[type[MovierecError], int] = {
    UnknownMovieError: 404,
    UnknownStrategyError: 422,
    InvalidDataError: 422,
    BundleError: 409,
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the model and the feedback store are opened in the lifespan hook."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings or get_settings()
        store = FeedbackStore.for_settings(s.home, s.database_url)
        state = ServiceState(settings=s, feedback=store)
        state.try_load_current()
        if state.engine is not None:
            MODEL_INFO.info({"version": state.engine.version})
        app.state.movierec = state
        yield
        store.close()

    app = FastAPI(
        title="movierec",
        version=__version__,
        description="Movie recommendations: known users, cold start, similar movies, ratings, "
        "feedback. Every answer names its model version and source.",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def guard_and_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        t0 = time.perf_counter()
        limit = (settings or get_settings()).max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            response: Response = JSONResponse(
                {"detail": f"request body larger than {limit} bytes"}, status_code=413
            )
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        elapsed = time.perf_counter() - t0
        REQUESTS.labels(request.method, path, str(response.status_code)).inc()
        LATENCY.labels(path).observe(elapsed)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                json.dumps(
                    {
                        "method": request.method,
                        "path": request.url.path,
                        "route": path,
                        "status": response.status_code,
                        "ms": round(elapsed * 1000, 3),
                        "model_version": response.headers.get("X-Model-Version"),
                    }
                )
            )
        return response

    @app.exception_handler(MovierecError)
    async def typed_error(request: Request, exc: MovierecError) -> JSONResponse:
        status = next((c for t, c in ERROR_STATUS.items() if isinstance(exc, t)), 400)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    app.include_router(system.router)
    app.include_router(recommend.router)
    app.include_router(catalog.router)
    return app
