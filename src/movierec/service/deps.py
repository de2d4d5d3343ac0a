"""FastAPI dependencies (``Annotated`` aliases used by the routers)."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from pydantic import SecretStr

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


#: RFC 6750 ``b64token``: the only characters a bearer token or API key may have.
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{1,512}$")


def _same(given: str, expected: SecretStr | None) -> bool:
    """Constant-time comparison of a well-formed credential with a configured secret."""
    if expected is None:
        return False
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


def _bearer(authorization: str | None) -> str | None:
    """The token of a well-formed ``Bearer`` header (None when absent or malformed)."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    token = authorization[7:]
    return token if _TOKEN.fullmatch(token) else None


def _basic(authorization: str | None) -> tuple[str, str] | None:
    """``(user, password)`` of a well-formed ``Basic`` header (None when absent or malformed)."""
    if not authorization or not authorization.startswith("Basic "):
        return None
    try:
        text = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = text.partition(":")
    return (user, password) if sep and user else None


async def require_admin(
    state: Annotated[ServiceState, Depends(get_state)],
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Admin check: a bearer token or HTTP Basic, compared in constant time.

    ``Bearer <MOVIEREC_ADMIN_TOKEN>``, or Basic with ``MOVIEREC_ADMIN_USER`` /
    ``MOVIEREC_ADMIN_PASSWORD``; 401 without a well-formed credential, 403 with a wrong one.
    """
    s = state.settings
    token = _bearer(authorization)
    basic = _basic(authorization)
    if token is None and basic is None:
        raise HTTPException(
            401,
            detail="admin endpoints need 'Authorization: Bearer <token>' or HTTP Basic",
            headers={"WWW-Authenticate": 'Bearer, Basic realm="movierec"'},
        )
    if token is not None and _same(token, s.admin_token):
        return
    if basic is not None and s.admin_user is not None:
        same_user = hmac.compare_digest(basic[0].encode(), s.admin_user.encode())
        if _same(basic[1], s.admin_password) and same_user:
            return
    raise HTTPException(403, detail="wrong admin credential (or none is configured)")


async def require_writer(
    state: Annotated[ServiceState, Depends(get_state)],
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Writing routes: the ``X-API-Key`` (or the admin token) when ``MOVIEREC_API_KEY`` is set.

    401 without a well-formed credential, 403 with a wrong one; open when no key is set.
    """
    s = state.settings
    if s.api_key is None:
        return
    token = _bearer(authorization)
    if token is not None and _same(token, s.admin_token):
        return
    if x_api_key is None or not _TOKEN.fullmatch(x_api_key):
        raise HTTPException(
            401,
            detail="writing needs an 'X-API-Key' header (MOVIEREC_API_KEY)",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    if not _same(x_api_key, s.api_key):
        raise HTTPException(403, detail="wrong API key")


def current(request: Request) -> tuple[ServiceState, Engine]:
    """State and engine without dependency injection (hottest route); 503 without a model."""
    state: ServiceState = request.app.state.movierec
    return state, engine_of(state)


StateDep = Annotated[ServiceState, Depends(get_state)]
EngineDep = Annotated[Engine, Depends(get_engine)]
AdminDep = Annotated[None, Depends(require_admin)]
WriterDep = Annotated[None, Depends(require_writer)]
