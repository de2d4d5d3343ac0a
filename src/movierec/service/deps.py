"""FastAPI dependencies (``Annotated`` aliases used by the routers)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from movierec.service.engine import Engine
from movierec.service.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    """The service state created in the lifespan hook."""
    state: ServiceState = request.app.state.movierec
    return state


def engine_of(state: ServiceState) -> Engine:
    """The current engine; 503 while no model is loaded."""
    if state.engine is None:
        raise HTTPException(503, detail=f"no model loaded: {state.last_error or 'starting'}")
    return state.engine


async def get_engine(state: Annotated[ServiceState, Depends(get_state)]) -> Engine:
    """The current engine (dependency form of :func:`engine_of`)."""
    return engine_of(state)


async def require_admin(
    state: Annotated[ServiceState, Depends(get_state)],
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Bearer token check: 401 without a token, 403 with a wrong one."""
    expected = state.settings.admin_token
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(
            401,
            detail="admin endpoints need 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if expected is None or not hmac.compare_digest(authorization[7:], expected):
        raise HTTPException(403, detail="wrong admin token (or MOVIEREC_ADMIN_TOKEN is unset)")


def current(request: Request) -> tuple[ServiceState, Engine]:
    """State and engine without dependency injection (hottest route); 503 without a model."""
    state: ServiceState = request.app.state.movierec
    return state, engine_of(state)


StateDep = Annotated[ServiceState, Depends(get_state)]
EngineDep = Annotated[Engine, Depends(get_engine)]
AdminDep = Annotated[None, Depends(require_admin)]
