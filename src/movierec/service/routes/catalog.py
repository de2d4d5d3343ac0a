"""Movies, search, popularity, similar movies and rating prediction."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from movierec.service.deps import EngineDep, StateDep
from movierec.service.render import provenance
from movierec.service.routes.recommend import K
from movierec.service.schemas import Count, IdParam, ItemOut, MovieOut, PredictionOut, Strategy

router = APIRouter(tags=["movies"])
MovieId = Annotated[IdParam, Path(description="MovieLens movie id (ASCII digits).")]


@router.get("/movies/search", response_model=list[MovieOut])
async def search(
    engine: EngineDep,
    q: Annotated[str, Query(min_length=1, max_length=200, description="Part of a title.")],
    limit: Annotated[Count, Query(ge=1, le=100)] = 10,
) -> list[MovieOut]:
    """Title search, most popular first."""
    return [MovieOut(**m) for m in engine.catalog.search(q, limit)]


@router.get("/movies/{movie_id}", response_model=MovieOut)
async def movie(movie_id: MovieId, engine: EngineDep) -> MovieOut:
    """One catalog movie (404 when unknown)."""
    return MovieOut(**engine.catalog.describe(movie_id))


@router.get("/popular", response_model=list[ItemOut])
async def popular(
    engine: EngineDep,
    response: Response,
    k: K = 10,
    genre: Annotated[str | None, Query(max_length=50)] = None,
) -> list[ItemOut]:
    """Most popular movies, optionally of one genre."""
    provenance(response, engine)
    return [ItemOut(**vars(i)) for i in engine.catalog.popular(k, genre)]


@router.get("/similar/movie/{movie_id}", response_model=list[ItemOut])
async def similar(
    movie_id: MovieId,
    engine: EngineDep,
    state: StateDep,
    response: Response,
    k: K = 10,
    strategy: Strategy | None = None,
) -> list[ItemOut]:
    """Movies similar to one movie (item-kNN neighbours when the bundle has them)."""
    provenance(response, engine)
    name = strategy or (
        "itemknn" if "itemknn" in engine.bundle.models else engine.bundle.default_strategy
    )
    items = await state.work.run(engine.similar, movie_id, k, name)
    return [ItemOut(**vars(i)) for i in items]


@router.get("/predict", response_model=PredictionOut)
async def predict(
    engine: EngineDep,
    response: Response,
    user_id: Annotated[IdParam, Query()],
    movie_id: Annotated[IdParam, Query()],
) -> PredictionOut:
    """Predicted rating in [0.5, 5] from the ``mf`` model."""
    provenance(response, engine)
    rating, source = engine.predict(user_id, movie_id)
    return PredictionOut(
        user_id=user_id,
        movie_id=movie_id,
        rating=rating,
        source=source,
        model_version=engine.version,
    )
