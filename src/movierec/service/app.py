"""The FastAPI application factory: lifespan, middleware, error mapping, routers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from movierec import __version__
from movierec.data.feedback import FeedbackStore
from movierec.errors import InvalidDataError, MovierecError
from movierec.lifecycle.bundle import BundleError
from movierec.service.catalog import UnknownMovieError
from movierec.service.engine import UnknownStrategyError
from movierec.service.metrics import LATENCY, MODEL_INFO, REQUESTS
from movierec.service.render import headers as render_headers
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


class _BodyTooLargeError(HTTPException):
    """413; an HTTPException so that FastAPI's body parsing lets it through as it is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"request body larger than {limit} bytes")


class GuardAndMeasure:
    """Pure ASGI middleware: body-size limit (413), Prometheus metrics, JSON access log.

    The limit applies to the declared ``content-length`` and to the bytes actually received,
    so a chunked upload cannot get around it.
    """

    def __init__(self, app: ASGIApp, max_body: int, owner: FastAPI | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.owner = owner
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI request through the guard and the measurements."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500
        version: str | None = None
        started = False
        length = dict(scope["headers"]).get(b"content-length")
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLargeError(self.max_body)
            return message

        async def measured_send(message: Message) -> None:
            nonlocal status, version, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                for k, v in message.get("headers", []):
                    if k == b"x-model-version":
                        version = v.decode()
            await send(message)

        try:
            fast = self._fast_answer(scope)
            if fast is not None:
                path = "/recommend/user/{user_id}"
                await fast(scope, receive, measured_send)
                self._observe(scope["method"], path, status, time.perf_counter() - t0, version)
                return
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                raise _BodyTooLargeError(self.max_body)
            bodiless = scope["method"] in ("GET", "HEAD") and length is None
            await self.app(scope, receive if bodiless else limited_receive, measured_send)
        except _BodyTooLargeError:
            if started:
                raise
            response = JSONResponse(
                {"detail": f"request body larger than {self.max_body} bytes"}, status_code=413
            )
            await response(scope, receive, measured_send)
        route = scope.get("route")
        self._observe(
            scope["method"],
            getattr(route, "path", "unmatched"),
            status,
            time.perf_counter() - t0,
            version,
        )

    def _fast_answer(self, scope: Scope) -> Response | None:
        """The pre-rendered answer of ``GET /recommend/user/{id}[?k=N][&strategy=S]``, if any.

        Only the plain form qualifies: a known user without feedback since training, a
        pre-rendered strategy (the default and the warmed ones), no other parameter. Anything
        else goes through FastAPI as usual, so the bytes sent here are exactly those the route
        would send.
        """
        if scope["method"] != "GET" or self.owner is None:
            return None
        path: str = scope["path"]
        if not path.startswith("/recommend/user/"):
            return None
        uid = path[16:]
        if not uid.isdigit() or len(uid) > 10:
            return None
        query: bytes = scope.get("query_string", b"")
        k, strategy = 10, None
        if query:
            if len(query) > 40:
                return None
            for part in query.split(b"&"):
                name, _, value = part.partition(b"=")
                if name == b"k" and value.isdigit() and len(value) <= 3:
                    k = int(value)
                elif name == b"strategy" and value.isalpha() and strategy is None:
                    strategy = value.decode()
                else:
                    return None
        state: ServiceState | None = getattr(self.owner.state, "movierec", None)
        if state is None or state.engine is None or not 1 <= k <= 500:
            return None
        engine = state.engine
        key = state.plain_key(int(uid), strategy or engine.bundle.default_strategy, k)
        body = engine.cached_response(key) if key is not None else None
        if body is None:
            return None
        return Response(body, media_type="application/json", headers=render_headers(engine))

    def _observe(
        self, method: str, path: str, status: int, elapsed: float, version: str | None
    ) -> None:
        """Count, time and (when enabled) log one request."""
        key = (method, path, status)
        children = self._children.get(key)
        if children is None:
            children = (REQUESTS.labels(key[0], path, str(status)), LATENCY.labels(path))
            self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                json.dumps(
                    {
                        "method": method,
                        "route": path,
                        "status": status,
                        "ms": round(elapsed * 1000, 3),
                        "model_version": version,
                    }
                )
            )


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
        watcher = state.watch_current(s.reload_poll_s)
        yield
        if watcher is not None:
            watcher.set()
        store.close()

    app = FastAPI(
        title="movierec",
        version=__version__,
        description="Movie recommendations: known users, cold start, similar movies, ratings, "
        "feedback. Every answer names its model version and source.",
        lifespan=lifespan,
    )

    app.add_middleware(
        GuardAndMeasure, max_body=(settings or get_settings()).max_body_bytes, owner=app
    )

    @app.exception_handler(MovierecError)
    async def typed_error(request: Request, exc: MovierecError) -> JSONResponse:
        status = next((c for t, c in ERROR_STATUS.items() if isinstance(exc, t)), 400)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    app.include_router(recommend.router)  # the hottest routes are matched first
    app.include_router(catalog.router)
    app.include_router(system.router)
    return app
