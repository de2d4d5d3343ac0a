"""Model names -> classes (the names used by the CLI, bundles and the service)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from movierec.models.base import Recommender
from movierec.models.ease import EASE
from movierec.models.factor import ALS, BPR
from movierec.models.genre import GenreKNN
from movierec.models.item_knn import ItemKNN
from movierec.models.mf import BiasedMF
from movierec.models.popularity import Popularity
from movierec.models.sequential import Sequential

MODELS: dict[str, type[Recommender]] = {
    m.name: m for m in (Popularity, ItemKNN, ALS, BPR, EASE, GenreKNN, BiasedMF, Sequential)
}


def _register_ranked() -> None:
    # the ranker composes the models above, so it registers itself after them
    from movierec.ranking.ranker import RankedRecommender

    MODELS[RankedRecommender.name] = RankedRecommender


_register_ranked()

#: Models that rank items (every model); ``mf`` also predicts ratings.
RANKING_MODELS = tuple(MODELS)
RATING_MODELS = ("mf",)


def create(name: str, params: Mapping[str, Any] | None = None) -> Recommender:
    """Instantiate a model by name with config overrides (validated by its config class)."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    cls = MODELS[name]
    return cls(cls.config_class.model_validate(params or {}))
