"""``train_and_publish``: the one way a model gets from data to a served bundle.

The CLI (`movierec train`) calls it; the scheduler and MLflow tracking build on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from movierec.data.catalog import Catalog
from movierec.data.interactions import InteractionData
from movierec.data.movielens import load_release, resolve_dataset
from movierec.evaluation.runner import Tables, run_evaluation
from movierec.lifecycle.bundle import publish_bundle
from movierec.models.base import Recommender, TrainOptions
from movierec.models.registry import create
from movierec.settings import Settings

logger = logging.getLogger(__name__)

#: Strategies a bundle carries by default: the service's strategies plus ``mf`` for /predict.
DEFAULT_STRATEGIES = ("popularity", "itemknn", "als", "ease", "mf", "ranked")


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    version: str
    default_strategy: str
    strategies: tuple[str, ...]
    fingerprint: dict[str, Any]
    metrics: dict[str, Any]
    seconds: float


def load_tables(dataset: str, settings: Settings, data_dir: Path | None = None) -> Tables:
    """Validated ratings, movies and tags of a release (name or folder)."""
    folder = resolve_dataset(dataset, settings, data_dir)
    rel = load_release(folder, chunk_bytes=settings.chunk_bytes, dedup=settings.dedup_keep)
    t = rel.tables
    return Tables(
        t["ratings"].table,
        t["movies"].table if "movies" in t else None,
        t["tags"].table if "tags" in t else None,
    )


def _catalog_table(movies: pa.Table | None) -> pa.Table:
    if movies is None:
        return pa.table(
            {
                "movie_id": pa.array([], pa.int32()),
                "title": pa.array([], pa.string()),
                "year": pa.array([], pa.int16()),
                "genres": pa.array([], pa.list_(pa.string())),
            }
        )
    return movies


def train_and_publish(
    settings: Settings,
    dataset: str,
    model: str = "ease",
    *,
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES,
    data_dir: Path | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    evaluate: bool = True,
    seed: int = 42,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Load data, fit every strategy, evaluate the default one, publish a bundle.

    Args:
        settings: Where state lives.
        dataset: Release name or folder.
        model: The default strategy (must be in ``strategies``; added when missing).
        strategies: Models to fit into the bundle.
        data_dir: Folder of releases (default ``MOVIEREC_DATA_DIR``).
        params: Config overrides per model.
        evaluate: Record leave-last-out metrics of the default strategy in the manifest.
        seed: Training seed.
        progress: Called with a label before each step.

    Returns:
        The published version and what went into it. A failure raises before ``CURRENT``
        moves, so the served model is never replaced by a broken run.
    """
    t0 = time.perf_counter()
    params = params or {}
    names = tuple(dict.fromkeys((*strategies, model)))
    tables = load_tables(dataset, settings, data_dir)
    data = InteractionData.from_table(tables.ratings)
    catalog = Catalog.build(data.items, tables.movies, tables.tags)
    options: TrainOptions = catalog.train_options(seed=seed)
    fitted: dict[str, Recommender] = {}
    for name in names:
        if progress is not None:
            progress(f"fit {name}")
        fitted[name] = create(name, params.get(name)).fit(data, options)
    metrics: dict[str, Any] = {}
    if evaluate:
        if progress is not None:
            progress(f"evaluate {model}")
        result = run_evaluation(
            tables, "leave-last-out", [model], [10, 20], seeds=1, params=params, dataset=dataset
        )
        metrics = {"protocol": "leave-last-out", **result["models"][model]}
    if progress is not None:
        progress("publish")
    version = publish_bundle(
        settings.bundles_dir,
        fitted,
        data.users,
        data.items,
        _catalog_table(tables.movies),
        default_strategy=model,
        fingerprint=data.fingerprint.to_dict(),
        metrics=metrics,
        extra={"dataset": dataset},
    )
    return TrainResult(
        version, model, names, data.fingerprint.to_dict(), metrics, time.perf_counter() - t0
    )
