"""The FastAPI application factory: lifespan, middleware, error mapping, routers."""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from threadpoolctl import threadpool_limits

from movierec import __version__
from movierec.data.feedback import FeedbackStore
from movierec.errors import InvalidDataError, MovierecError
from movierec.lifecycle.bundle import BundleError
from movierec.redact import install_log_redaction, redact
from movierec.service.catalog import UnknownMovieError
from movierec.service.engine import UnknownStrategyError
from movierec.service.jobs import UnknownJobError
from movierec.service.metrics import LATENCY, MODEL_INFO, REQUESTS
from movierec.service.routes import catalog, experiments, recommend, system, training
from movierec.service.state import ServiceState
from movierec.settings import Settings, get_settings

access_log = logging.getLogger("movierec.access")
error_log = logging.getLogger("movierec.errors")
logger = logging.getLogger(__name__)

#: Typed errors -> HTTP status, in one place.
ERROR_STATUS: dict[type[MovierecError], int] = {
    UnknownMovieError: 404,
    UnknownStrategyError: 422,
    InvalidDataError: 422,
    BundleError: 409,
    UnknownJobError: 404,
}


def _document_domain_errors(app: FastAPI) -> None:
    """Say in the schema that a 422 is field errors (a list) or a domain error (a message).

    FastAPI documents 422 as its validation error only; :data:`ERROR_STATUS` also answers 422
    with a message (an unknown strategy, a bad interval). Found by schemathesis
    (``response_schema_conformance``) in the reliability suite.
    """
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        error = schema.get("components", {}).get("schemas", {}).get("HTTPValidationError")
        if error is not None:
            listed = error["properties"]["detail"]
            error["properties"]["detail"] = {
                "title": "Detail",
                "anyOf": [
                    {k: v for k, v in listed.items() if k != "title"},
                    {"type": "string", "description": "A domain error's message."},
                ],
            }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class _BodyTooLargeError(HTTPException):
    """413; an HTTPException so that FastAPI's body parsing lets it through as it is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"request body larger than {limit} bytes")


_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")
#: Request ids: a random per-process prefix and a counter (unique, and cheap per request).
_RID_PREFIX = f"{uuid.uuid4().hex[:8]}-"
_rid_seq = itertools.count(1)


class GuardAndMeasure:
    """Pure ASGI middleware: body-size limit (413), request ids, 5xx capture, metrics, log.

    The limit applies to the declared ``content-length`` and to the bytes actually received,
    so a chunked upload cannot get around it. Every response carries ``X-Request-ID`` (the
    client's, when well formed, else a new one). An exception that escapes a route becomes a
    500 whose body names only the request id; it is counted on ``/metrics`` and written to the
    access log and the error log (with the traceback) under that id. Paths are never parsed
    here: FastAPI's router is the only one.
    """

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI request through the guard and the measurements."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500
        version: str | None = None
        variant: str | None = None
        started = False
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        given = headers.get(b"x-request-id", b"")
        rid = given.decode() if _REQUEST_ID.fullmatch(given) else f"{_RID_PREFIX}{next(_rid_seq):x}"
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
            nonlocal status, version, started, variant
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                for k, v in message.get("headers", []):
                    if k == b"x-model-version":
                        version = v.decode()
                    elif k == b"x-variant":
                        variant = v.decode()
                message = {**message, "headers": [*message.get("headers", []), _rid(rid)]}
            await send(message)

        try:
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
        except Exception:
            error_log.exception(
                "request %s %s failed (request id %s)", scope["method"], scope["path"], rid
            )
            if not started:
                response = JSONResponse(
                    {"detail": "internal error", "request_id": rid}, status_code=500
                )
                await response(scope, receive, measured_send)
            status = 500
        route = scope.get("route")
        self._observe(
            scope["method"],
            getattr(route, "path", "unmatched"),
            status,
            time.perf_counter() - t0,
            version,
            rid,
            variant,
        )

    def _observe(
        self,
        method: str,
        path: str,
        status: int,
        elapsed: float,
        version: str | None,
        rid: str,
        variant: str | None = None,
    ) -> None:
        """Count, time and (when enabled) log one request."""
        key = (method, path, status)
        children = self._children.get(key)
        if children is None:
            children = (REQUESTS.labels(key[0], path, str(status)), LATENCY.labels(path))
            self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)
        if access_log.isEnabledFor(logging.INFO) or status >= 500:
            access_log.log(
                logging.ERROR if status >= 500 else logging.INFO,
                json.dumps(
                    {
                        "method": method,
                        "route": path,
                        "status": status,
                        "ms": round(elapsed * 1000, 3),
                        "model_version": version,
                        "variant": variant,
                        "request_id": rid,
                    }
                ),
            )


def _rid(rid: str) -> tuple[bytes, bytes]:
    return (b"x-request-id", rid.encode())


def _short(value: Any, limit: int = 200) -> str:
    """A value quoted in an error body: its repr, at most ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 whose body is always serialisable.

    Each error gives its location, message and the input quoted as text and shortened: never
    a raw float NaN (not JSON) or a megabyte of echoed input.
    """
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {
            "loc": [str(x)[:100] for x in e.get("loc", ())],
            "msg": str(e.get("msg", ""))[:300],
            "type": str(e.get("type", "")),
            "input": _short(e.get("input")),
        }
        for e in errors[:20]
    ]
    return JSONResponse({"detail": detail}, status_code=422)


#: FastAPI's native OpenTelemetry off (``MOVIEREC_OTEL``): it asked the OpenTelemetry API
#: whether a provider is configured on every request, 4% of a cached answer's time.
_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the model and the feedback store are opened in the lifespan hook."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings or get_settings()
        blas = threadpool_limits(s.serve_blas_threads, "blas")  # until shutdown
        store = FeedbackStore.for_settings(s.home, s.reveal(s.database_url))
        install_log_redaction()
        if s.api_key is None:
            logger.warning(
                "writes are open: POST /feedback needs no credential (set MOVIEREC_API_KEY)"
            )
        state = ServiceState(settings=s, feedback=store)
        state.try_load_current()
        if state.engine is not None:
            MODEL_INFO.info({"version": state.engine.version})
        app.state.movierec = state
        watchers = [
            state.watch_current(s.reload_poll_s),
            state.watch_feedback(s.feedback_poll_s),
            state.watch_online(s.online_metrics_s),
        ]
        yield
        for watcher in watchers:
            if watcher is not None:
                watcher.set()
        if state.request_log is not None:
            state.request_log.close()
        store.close()
        blas.restore_original_limits()

    app = FastAPI(
        title="movierec",
        version=__version__,
        description="Movie recommendations: known users, cold start, similar movies, ratings, "
        "feedback. Every answer names its model version and source.",
        lifespan=lifespan,
        telemetry=None if (settings or get_settings()).otel else _NO_TELEMETRY,
    )

    app.add_middleware(GuardAndMeasure, max_body=(settings or get_settings()).max_body_bytes)
    app.add_exception_handler(RequestValidationError, validation_error)

    @app.exception_handler(MovierecError)
    async def typed_error(request: Request, exc: MovierecError) -> JSONResponse:
        status = next((c for t, c in ERROR_STATUS.items() if isinstance(exc, t)), 400)
        return JSONResponse({"detail": redact(str(exc))[:1000]}, status_code=status)

    _document_domain_errors(app)
    app.include_router(recommend.router)  # the hottest routes are matched first
    app.include_router(catalog.router)
    app.include_router(system.router)
    app.include_router(training.router)
    app.include_router(experiments.router)
    return app
