"""Recommendation endpoints: every form goes through :func:`_recommend`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

from movierec.data.user_feedback import UserFeedback
from movierec.service.deps import EngineDep, StateDep, current
from movierec.service.engine import Engine
from movierec.service.experiments import experiment_answer
from movierec.service.render import json_answer, out_json, provenance
from movierec.service.render import out as _out
from movierec.service.schemas import (
    BatchIn,
    BatchOut,
    ColdQuery,
    Count,
    IdParam,
    RecommendationOut,
    RecommendQuery,
    SessionIn,
    Strategy,
    query_parameters,
)
from movierec.service.state import ServiceState

router = APIRouter(tags=["recommendations"])
P = ParamSpec("P")
Q = TypeVar("Q", bound=BaseModel)

K = Annotated[Count, Query(ge=1, le=500, description="How many movies.")]
UserId = Annotated[IdParam, Path(description="MovieLens user id (ASCII digits, 1 … 2³¹−1).")]


def _recommend(
    engine: Engine,
    fb: UserFeedback | None,
    user_id: int,
    k: int,
    strategy: str | None,
    exclude_seen: bool = True,
    explain: bool = False,
    alpha: float | None = None,
) -> RecommendationOut:
    """A user's answer given the feedback read once by the caller (what its key was made of)."""
    ans = engine.recommend(
        user_id,
        k,
        strategy or engine.bundle.default_strategy,
        exclude_seen=exclude_seen,
        feedback=fb,
        alpha=alpha,
    )
    if explain:
        engine.explain(ans, user_id, fb)
    return _out(engine, ans, explain)


#: Suffix of the strategy name under which a known user's explained answer is stored.
EXPLAINED = "+explain"

#: Largest catalog whose explanations of cached answers are computed on the event loop (the
#: reasons read the answer's similarity rows densely: O(k · items)).
INLINE_EXPLAIN_MAX_ITEMS = 20_000


def _explain_inline(
    engine: Engine, state: ServiceState, user_id: int, name: str, k: int, exclude_seen: bool
) -> bool:
    """Whether an explained answer costs no scoring, so it may be computed on the event loop.

    That is a known user without feedback whose top-N is cached, on a catalog of at most
    :data:`INLINE_EXPLAIN_MAX_ITEMS` items.
    """
    if not exclude_seen or name == "mixed" or len(engine.catalog.items) > INLINE_EXPLAIN_MAX_ITEMS:
        return False
    key = state.plain_key(user_id, name, k)
    return key is not None and engine.has_top(name, key[1])


def _serialised(fn: Callable[P, BaseModel]) -> Callable[P, bytes]:
    """``fn`` whose answer is rendered to JSON bytes where it runs (a worker thread)."""

    def run(*args: P.args, **kwargs: P.kwargs) -> bytes:
        return fn(*args, **kwargs).model_dump_json().encode()

    return run


#: :func:`_recommend` serialised to JSON (in the worker thread, off the event loop).
_recommend_bytes = _serialised(_recommend)


async def _answer_bytes(
    state: ServiceState, engine: Engine, fb: UserFeedback | None, user_id: int, q: RecommendQuery
) -> bytes:
    """:func:`_recommend` of a query as JSON bytes, computed where it costs least.

    A row scored afresh (feedback since training) is awaited on the event loop from the
    scoring thread, under the same work limit, and rendered here (a worker hop per request
    cost more than the rendering); everything else runs in a worker thread.
    """
    name = q.strategy or engine.bundle.default_strategy
    if not q.explain and engine.scores_afresh(user_id, name, fb):  # (alpha: mixed's only)
        assert fb is not None
        async with state.work.slot():
            ans = await engine.recommend_afresh(user_id, q.k, name, fb, q.exclude_seen)
        return out_json(engine, ans, False)
    return await state.work.run(
        _recommend_bytes, engine, fb, user_id, q.k, q.strategy, q.exclude_seen, q.explain, q.alpha
    )


#: ``user_id`` of ``/recommend/user/{user_id}``, validated like any other id parameter.
_USER_ID: TypeAdapter[int] = TypeAdapter(IdParam)
_USER_ID_DOC = "MovieLens user id (ASCII digits, 1 … 2³¹−1)."


def _located(e: ValidationError, *where: str) -> list[dict[str, Any]]:
    """A validation error's entries, located in the request (``("query", ...)``)."""
    return [{**err, "loc": (*where, *err["loc"])} for err in e.errors()]


def _user_request(request: Request) -> tuple[int, RecommendQuery]:
    """The path's user id and the query string, validated (422 like any other parameter).

    One pydantic call each instead of FastAPI's solving of the parameters one by one, which
    took a third of a cached answer's time; the OpenAPI schema publishes the same parameters.
    """
    errors: list[dict[str, Any]] = []
    user_id, query = 0, None
    try:
        user_id = _USER_ID.validate_python(request.path_params["user_id"])
    except ValidationError as e:
        errors += _located(e, "path", "user_id")
    try:
        query = RecommendQuery.model_validate(request.query_params)
    except ValidationError as e:
        errors += _located(e, "query")
    if errors or query is None:
        raise RequestValidationError(errors)
    return user_id, query


@router.get(
    "/recommend/user/{user_id}",
    response_model=RecommendationOut,
    responses={422: {"description": "Invalid user id or query parameter."}},
    openapi_extra={
        "parameters": [
            {
                "name": "user_id",
                "in": "path",
                "required": True,
                "description": _USER_ID_DOC,
                "schema": {**_USER_ID.json_schema(), "description": _USER_ID_DOC},
            },
            *query_parameters(RecommendQuery),
        ]
    },
)
async def recommend_user(request: Request) -> Response:
    """Top-k for a user; unknown users go down the fallback chain (the response says so)."""
    # the hottest route resolves state and parameters itself: no dependency solving, no
    # response re-validation
    user_id, q = _user_request(request)
    k, strategy, exclude_seen, explain = q.k, q.strategy, q.exclude_seen, q.explain
    state, engine = current(request)
    t0 = time.perf_counter()
    log = state.request_log
    if strategy is None and not explain and exclude_seen:
        exp = state.experiments.current()
        if exp is not None:  # the user's variant (or an interleaved list) answers
            fb = state.feedback.user(user_id)
            res, label = await state.work.run(
                experiment_answer, exp, engine, state.versions, fb, user_id, k
            )
            text = res.model_dump_json()
            if log is not None:
                log.record(user_id, text, label, (time.perf_counter() - t0) * 1000)
            response = json_answer(engine, text)
            response.headers["X-Variant"] = label
            return response
    name = strategy or engine.bundle.default_strategy
    storable = exclude_seen and name != "mixed"  # (alpha is mixed's only)
    # an explained answer is as fixed as the plain one (same history, same model): kept
    # beside it under its own name ("+" is in no strategy name) and dropped with it
    fb = state.feedback.user(user_id)  # read once: the key and the answer see the same
    stored = name + EXPLAINED if explain else name
    key = state.answer_key(user_id, stored, k, fb) if storable else None
    if key is not None:
        # a known user with no feedback since training, or a feedback state answered before:
        # served from bytes
        body = engine.cached_response(key)
        if body is None:
            if explain and fb is None and _explain_inline(engine, state, user_id, name, k, True):
                # the reasons of a cached top-N: about half a millisecond, cheaper on the event
                # loop than a hop to a worker thread that competes with it for the GIL
                body = _recommend_bytes(engine, fb, user_id, k, name, True, True)
            else:
                body = await _answer_bytes(state, engine, fb, user_id, q)
            engine.store_response(key, body)
    else:  # per request; serialised in the worker too (reasons make long answers)
        body = await _answer_bytes(state, engine, fb, user_id, q)
    if log is not None:
        log.record(user_id, body, engine.version, (time.perf_counter() - t0) * 1000)
    return json_answer(engine, body)


@router.get("/recommend/mixed/{user_id}", response_model=RecommendationOut)
async def recommend_mixed(
    user_id: UserId,
    engine: EngineDep,
    state: StateDep,
    response: Response,
    k: K = 10,
    alpha: Annotated[
        float, Query(ge=0, le=1, description="Model weight (1 - alpha: popularity).")
    ] = 0.8,
    explain: bool = False,
) -> RecommendationOut:
    """The model/popularity blend: ``alpha · model + (1 - alpha) · popularity`` (min-max scaled)."""
    provenance(response, engine)
    fb = state.feedback.user(user_id)
    return await state.work.run(_recommend, engine, fb, user_id, k, "mixed", True, explain, alpha)


@router.get("/recommend", response_model=RecommendationOut)
async def recommend_query(
    engine: EngineDep,
    state: StateDep,
    response: Response,
    user_id: Annotated[IdParam, Query()],
    k: K = 10,
    strategy: Strategy | None = None,
) -> RecommendationOut:
    """The query form: ``/recommend?user_id=1&k=10``."""
    provenance(response, engine)
    fb = state.feedback.user(user_id)
    return await state.work.run(_recommend, engine, fb, user_id, k, strategy)


@router.get("/recommend/{user_id}", response_class=PlainTextResponse)
async def recommend_plain(user_id: UserId, engine: EngineDep, state: StateDep) -> PlainTextResponse:
    """Up to 20 comma-separated movie ids on one line (the stream-course contract)."""
    out = await state.work.run(_recommend, engine, state.feedback.user(user_id), user_id, 20, None)
    body = ",".join(str(i.movie_id) for i in out.items)
    resp = PlainTextResponse(body)
    provenance(resp, engine)
    return resp


@router.post(
    "/recommend/batch",
    response_model=BatchOut,
    responses={422: {"description": "Invalid body, or a batch over the work budget."}},
)
async def recommend_batch(body: BatchIn, engine: EngineDep, state: StateDep) -> Response:
    """Many users at once: known users are scored as one matrix product.

    Bounded before any work: at most ``MOVIEREC_MAX_BATCH_USERS`` users, users × k at most
    ``MOVIEREC_MAX_BATCH_ITEMS``, and an answer of at most ``MOVIEREC_MAX_RESPONSE_BYTES``.
    The answer is serialised in the worker thread too: tens of thousands of items rendered on
    the event loop held ``/health`` for seconds.
    """
    check_budget(state, engine, len(body.user_ids), body.k)
    name = body.strategy or engine.bundle.default_strategy

    def run() -> Response:
        answers = engine.batch(body.user_ids, body.k, name)
        out = BatchOut(
            model_version=engine.version, results=[_out(engine, a, False) for a in answers]
        )
        return json_answer(engine, out.model_dump_json())

    return await state.batches.run(run)


def check_budget(state: ServiceState, engine: Engine, users: int, k: int) -> None:
    """422 when a request asks for more than the work budget allows (before any work)."""
    s = state.settings
    if users > s.max_batch_users:
        raise HTTPException(
            422, detail=f"{users} users in one batch; the limit is {s.max_batch_users}"
        )
    if users * k > s.max_batch_items:
        raise HTTPException(
            422,
            detail=f"users × k = {users * k}; the limit is {s.max_batch_items} "
            "(ask for fewer users or a smaller k)",
        )
    estimate = users * (k * engine.catalog.max_item_bytes + 256)
    if estimate > s.max_response_bytes:
        raise HTTPException(
            422,
            detail=f"the answer could reach {estimate} bytes; the limit is "
            f"{s.max_response_bytes} (ask for fewer users or a smaller k)",
        )


def _query(model: type[Q], request: Request) -> Q:
    """A route's query string validated as one model (422 like any other parameter)."""
    try:
        return model.model_validate(request.query_params)
    except ValidationError as e:
        raise RequestValidationError(_located(e, "query")) from None


@router.get(
    "/recommend_cold",
    response_model=RecommendationOut,
    responses={422: {"description": "Invalid liked movies or query parameter."}},
    openapi_extra={"parameters": query_parameters(ColdQuery)},
)
async def recommend_cold(request: Request) -> Response:
    """Cold start: fold-in of a new user from movies they like."""
    state, engine = current(request)  # (no model: 503 whatever the query)
    q = _query(ColdQuery, request)
    ids = _parse_ids(q.liked)
    name = q.strategy or engine.bundle.default_strategy
    if not q.explain and engine.knows_any(ids):  # the row awaited on the loop (no worker hop)
        async with state.work.slot():
            ans = await engine.cold_async(ids, [], q.k, name)
        return json_answer(engine, out_json(engine, ans, False))

    def run() -> bytes:
        ans = engine.cold(ids, [], q.k, name)
        if q.explain:
            likes = UserFeedback()
            for m in ids:
                likes.apply(m, "like", None)
            engine.explain(ans, None, likes)
        return out_json(engine, ans, q.explain)

    return json_answer(engine, await state.work.run(run))


@router.post("/recommend/session", response_model=RecommendationOut)
async def recommend_session(
    body: SessionIn, engine: EngineDep, state: StateDep, response: Response
) -> RecommendationOut:
    """A new user's session: fold-in of liked movies; liked and disliked ones are excluded."""
    provenance(response, engine)
    name = body.strategy or engine.bundle.default_strategy
    if engine.knows_any(body.liked):  # the fold-in row awaited on the loop (no worker hop)
        async with state.work.slot():
            ans = await engine.cold_async(body.liked, body.disliked, body.k, name)
    else:
        ans = await state.work.run(engine.cold, body.liked, body.disliked, body.k, name)
    return _out(engine, ans, False)


def _parse_ids(text: str) -> list[int]:
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or len(part) > 10 or not 0 < int(part) < 2**31:
            raise HTTPException(
                422, detail=f"movie ids must be positive integers, got {part[:20]!r}"
            )
        ids.append(int(part))
    if not ids:
        raise HTTPException(422, detail="give at least one movie id")
    return ids
