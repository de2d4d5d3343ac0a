"""Every strategy name -> its class, ``ranked`` included; the one place models are made and loaded.

Single-stage models (:mod:`movierec.models`) never import :mod:`movierec.ranking`; the ranker
imports the models but never this table: it is handed :data:`SOURCES`, which makes and loads
its candidate sources by name. Bundles, the CLI, the evaluation runner, the trainer and the
service all go through :func:`create` and :func:`load`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from movierec.models.base import ModelConfig, Recommender, SharedParts
from movierec.models.ease import EASE
from movierec.models.factor import ALS, BPR
from movierec.models.genre import GenreKNN
from movierec.models.item_knn import ItemKNN
from movierec.models.mf import BiasedMF
from movierec.models.persist import read_meta
from movierec.models.popularity import Popularity
from movierec.models.sequential import Sequential
from movierec.ranking.config import RankedConfig
from movierec.ranking.ranker import RankedRecommender, SourceModels

#: Models that score on their own (candidate sources of ``ranked``).
SINGLE_STAGE: dict[str, type[Recommender]] = {
    m.name: m for m in (Popularity, ItemKNN, ALS, BPR, EASE, GenreKNN, BiasedMF, Sequential)
}
#: Every strategy a bundle can carry and the service can serve.
STRATEGIES: dict[str, type[Recommender]] = {
    **SINGLE_STAGE,
    RankedRecommender.name: RankedRecommender,
}
#: Strategies that rank items (all of them); ``mf`` also predicts ratings.
RANKING_MODELS = tuple(STRATEGIES)
RATING_MODELS = ("mf",)


def _instantiate(cls: type[Recommender], config: ModelConfig) -> Recommender:
    if issubclass(cls, RankedRecommender) and isinstance(config, RankedConfig):
        return cls(config, sources=SOURCES)
    return cls(config)


def create(name: str, params: Mapping[str, Any] | None = None) -> Recommender:
    """A new, unfitted model by name with config overrides (validated by its config class).

    Raises:
        KeyError: Unknown name (the message lists the known ones).
    """
    if name not in STRATEGIES:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(STRATEGIES)}")
    cls = STRATEGIES[name]
    return _instantiate(cls, cls.config_class.model_validate(params or {}))


def load(folder: Path, shared: SharedParts | None = None) -> Recommender:
    """Load any model saved by :meth:`Recommender.save` (``model.json`` + ``arrays.npz``).

    ``shared`` gives what a bundle stores once (the history, models referred to by name).
    """
    meta = read_meta(folder)
    name = meta.get("model")
    if name not in STRATEGIES:
        raise KeyError(f"unknown model {name!r} in {folder.name}; known: {', '.join(STRATEGIES)}")
    cls = STRATEGIES[name]
    model = _instantiate(cls, cls.config_class.model_validate(meta["config"]))
    model.restore(folder, meta, shared)
    return model


#: How ``ranked`` makes and loads its candidate sources.
SOURCES = SourceModels(frozenset(SINGLE_STAGE), create, load)
