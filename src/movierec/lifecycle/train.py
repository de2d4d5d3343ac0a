"""``train_and_publish``: the one way a model gets from data to a served bundle.

The CLI (`movierec train`), the scheduler and the tests all call it. Order (Gorse's publish
order plus a registry): load data and the feedback received since training -> fit -> evaluate
-> log to MLflow -> write the bundle (not yet current) -> register it as the challenger ->
promote if better (champion alias, then the ``CURRENT`` swap) -> tell the service to reload.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import pyarrow as pa

from movierec import __version__
from movierec.data.catalog import Catalog
from movierec.data.interactions import InteractionData
from movierec.data.movielens import load_release, resolve_dataset
from movierec.data.store import open_store
from movierec.errors import MovierecError
from movierec.evaluation.runner import Tables, plot_results, run_evaluation
from movierec.evaluation.splits import PROTOCOLS, Protocol
from movierec.lifecycle.bundle import (
    current_version,
    git_commit,
    prune,
    publish_bundle,
    set_current,
)
from movierec.lifecycle.tracking import CHALLENGER, CHAMPION, Tracker
from movierec.models.base import Recommender
from movierec.models.registry import create
from movierec.service.feedback import SAVE_VALUE, FeedbackStore
from movierec.settings import Settings

logger = logging.getLogger(__name__)

#: Strategies a bundle carries by default: the service's strategies plus ``mf`` for /predict.
DEFAULT_STRATEGIES = ("popularity", "itemknn", "als", "ease", "mf", "ranked")


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced and what was decided about it."""

    version: str
    default_strategy: str
    strategies: tuple[str, ...]
    fingerprint: dict[str, Any]
    metrics: dict[str, Any]
    seconds: float
    promoted: bool = True
    decision: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    registered_version: str | None = None
    feedback: dict[str, int] = field(default_factory=dict)


def load_tables(dataset: str, settings: Settings, data_dir: Path | None = None) -> Tables:
    """Validated ratings, movies and tags: of a release (name or folder), or of the store.

    ``dataset="store"`` reads the ingested tables (``movierec data ingest``, the batch folder
    flow), so scheduled retraining sees every batch that landed.
    """
    if dataset == "store":
        store = open_store(settings)
        ratings = store.read("ratings")
        if not ratings.num_rows:
            raise MovierecError("the store holds no ratings: run `movierec data ingest` first")
        movies, tags, links = (store.read(n) for n in ("movies", "tags", "links"))
        return Tables(
            ratings,
            movies if movies.num_rows else None,
            tags if tags.num_rows else None,
            links if links.num_rows else None,
        )
    folder = resolve_dataset(dataset, settings, data_dir)
    rel = load_release(folder, chunk_bytes=settings.chunk_bytes, dedup=settings.dedup_keep)
    t = rel.tables
    return Tables(
        t["ratings"].table,
        t["movies"].table if "movies" in t else None,
        t["tags"].table if "tags" in t else None,
        t["links"].table if "links" in t else None,
    )


#: Value of a liked movie the user had not rated; a like on a rated movie adds LIKE_BONUS.
LIKE_VALUE = 5.0
LIKE_BONUS = 1.0
#: Value of a watched movie the user had not rated.
WATCH_VALUE = 3.0


def merge_feedback(
    ratings: pa.Table, events: list[dict[str, Any]]
) -> tuple[pa.Table, dict[str, int]]:
    """Apply feedback events (in arrival order) to the ratings table.

    Likes add weight (``+LIKE_BONUS`` up to 5 on a rated movie, ``LIKE_VALUE`` otherwise),
    dislikes remove the pair, ratings set the value, watches and saves add the pair when
    missing (``WATCH_VALUE``, ``SAVE_VALUE``). The pair's timestamp becomes the event's.

    Returns:
        The new table and counts: events, pairs added, updated and removed.
    """
    counts = {"events": len(events), "added": 0, "updated": 0, "removed": 0}
    if not events:
        return ratings, counts
    users = ratings["user_id"].to_numpy().astype(np.int64)
    movies = ratings["movie_id"].to_numpy().astype(np.int64)
    touched = {(int(e["user_id"]), int(e["movie_id"])) for e in events}
    candidates = np.flatnonzero(np.isin(users, np.array([u for u, _ in touched], np.int64)))
    vals, tss = ratings["rating"].to_numpy(), ratings["timestamp"].to_numpy()
    base: dict[tuple[int, int], tuple[float, int]] = {}
    drop = np.zeros(users.size, bool)  # rows replaced by the feedback's final state
    for r in candidates.tolist():
        key = (int(users[r]), int(movies[r]))
        if key in touched:
            base[key] = (float(vals[r]), int(tss[r]))
            drop[r] = True
    state: dict[tuple[int, int], tuple[float, int] | None] = dict(base)
    for e in events:
        key = (int(e["user_id"]), int(e["movie_id"]))
        cur = state.get(key)
        ts = int(float(e.get("timestamp") or e.get("received") or 0))
        signal, value = str(e["signal"]), e.get("value")
        if signal == "dislike":
            state[key] = None
        elif signal == "like":
            state[key] = (min(5.0, cur[0] + LIKE_BONUS) if cur else LIKE_VALUE, ts)
        elif signal == "rating" and value is not None:
            state[key] = (float(value), ts)
        elif signal == "watch" and cur is None:
            state[key] = (WATCH_VALUE, ts)
        elif signal == "save" and cur is None:
            state[key] = (SAVE_VALUE, ts)
    kept = ratings.filter(pa.array(~drop))
    new = [(k, v) for k, v in state.items() if v is not None]
    for k, v in state.items():
        if k in base and v is None:
            counts["removed"] += 1
        elif k in base and v is not None and v != base[k]:
            counts["updated"] += 1
        elif k not in base and v is not None:
            counts["added"] += 1
    schema = ratings.schema
    extra = pa.table(
        {
            "user_id": pa.array([k[0] for k, _ in new], schema.field("user_id").type),
            "movie_id": pa.array([k[1] for k, _ in new], schema.field("movie_id").type),
            "rating": pa.array([v[0] for _, v in new], schema.field("rating").type),
            "timestamp": pa.array([v[1] for _, v in new], schema.field("timestamp").type),
        }
    ).select(schema.names)
    return pa.concat_tables([kept, extra.cast(schema)]), counts


def _catalog_table(movies: pa.Table | None, links: pa.Table | None = None) -> pa.Table:
    """Movies of the bundle (title, year, genres, and TMDB id when links are known)."""
    if movies is not None and links is not None and "tmdb_id" in links.column_names:
        tmdb = dict(zip(links["movie_id"].to_pylist(), links["tmdb_id"].to_pylist(), strict=True))
        ids = [tmdb.get(m) for m in movies["movie_id"].to_pylist()]
        return movies.append_column("tmdb_id", pa.array(ids, pa.int64()))
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


LOWER_IS_BETTER = ("rmse", "mae")


def _better(metric: str, challenger: float, champion: float, min_improve: float) -> bool:
    """Whether the challenger beats the champion by at least ``min_improve`` (ties pass at 0)."""
    eps = 1e-12
    if metric.split("@")[0] in LOWER_IS_BETTER:
        return challenger <= champion - min_improve + eps
    return challenger >= champion + min_improve - eps


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
    protocol: str | None = None,
    metric: str | None = None,
    min_improve: float | None = None,
    use_feedback: bool = True,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Data (+ feedback) -> fit -> evaluate -> log -> register -> promote if better -> publish.

    Args:
        settings: Where state lives, MLflow, promotion rule.
        dataset: Release name or folder, or ``store``.
        model: The default strategy (added to ``strategies`` when missing).
        strategies: Models to fit into the bundle.
        data_dir: Folder of releases (default ``MOVIEREC_DATA_DIR``).
        params: Config overrides per model.
        evaluate: Evaluate the default strategy and apply the promotion rule; without it the
            new model is promoted unconditionally (and the run says so).
        seed: Training seed.
        protocol: Evaluation protocol (default ``MOVIEREC_TRAIN_PROTOCOL``).
        metric: Promotion metric (default ``MOVIEREC_PROMOTE_METRIC``).
        min_improve: Least improvement (default ``MOVIEREC_MIN_IMPROVE``).
        use_feedback: Merge the feedback received by the service into the training data.
        progress: Called with a label before each step.

    Returns:
        What was published and decided. A failure raises before ``CURRENT`` or the champion
        alias move, so the served model is never replaced by a broken run; the MLflow run is
        marked FAILED.
    """
    t0 = time.perf_counter()
    params = params or {}
    protocol = protocol or settings.train_protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use {', '.join(PROTOCOLS)}")
    metric = metric or settings.promote_metric
    min_improve = settings.min_improve if min_improve is None else min_improve
    names = tuple(dict.fromkeys((*strategies, model)))

    def step(label: str) -> None:
        logger.info("train: %s", label)
        if progress is not None:
            progress(label)

    tables = load_tables(dataset, settings, data_dir)
    fb_counts: dict[str, int] = {"events": 0}
    if use_feedback:
        fb = FeedbackStore.for_settings(settings.home, settings.database_url)
        try:
            ratings, fb_counts = merge_feedback(tables.ratings, fb.since(0.0))
        finally:
            fb.close()
        tables = Tables(ratings, tables.movies, tables.tags, tables.links)
    data = InteractionData.from_table(tables.ratings)
    fingerprint = data.fingerprint.to_dict()
    tracker = Tracker(settings)
    models = {n: create(n, params.get(n)) for n in names}
    config = models[model].config
    run_id = tracker.start_run(
        f"train-{model}",
        {
            "dataset": dataset,
            "protocol": protocol,
            "model": model,
            "data_fingerprint": str(fingerprint["sha256"]),
            "config_hash": config.config_hash(),
            "git_commit": git_commit() or "",
            "code_version": __version__,
        },
    )
    ok = False
    try:
        tracker.log(
            run_id,
            params={
                "model": model,
                "strategies": ",".join(names),
                "seed": seed,
                "protocol": protocol,
                "promote_metric": metric,
                "min_improve": min_improve,
                "config": {n: m.config.model_dump(mode="json") for n, m in models.items()},
            },
            metrics={f"data_{k}": v for k, v in fingerprint.items() if k != "sha256"}
            | {f"feedback_{k}": v for k, v in fb_counts.items()},
        )
        catalog = Catalog.build(data.items, tables.movies, tables.tags)
        options = catalog.train_options(seed=seed)
        fitted: dict[str, Recommender] = {}
        for name in names:
            step(f"fit {name}")
            fitted[name] = models[name].fit(data, options)
        metrics: dict[str, Any] = {}
        if evaluate:
            step(f"evaluate {model}")
            metrics = _evaluate(tracker, run_id, tables, protocol, model, params, dataset)
        step("publish")
        version = publish_bundle(
            settings.bundles_dir,
            fitted,
            data.users,
            data.items,
            _catalog_table(tables.movies, tables.links),
            default_strategy=model,
            fingerprint=fingerprint,
            metrics=metrics,
            extra={
                "dataset": dataset,
                "mlflow_run_id": run_id,
                "mlflow_tracking_uri": tracker.uri,
                "feedback": fb_counts,
            },
            make_current=False,
        )
        step("register")
        value = metrics.get(metric)
        reg = tracker.register(
            run_id,
            settings.bundles_dir / version,
            {
                "bundle_version": version,
                "model": model,
                "params_json": json.dumps(params.get(model) or {}),
                "config_hash": config.config_hash(),
                "metric": metric,
                "metric_value": "" if value is None else repr(float(value)),
                "protocol": protocol,
                "data_fingerprint": str(fingerprint["sha256"]),
                "dataset": dataset,
            },
        )
        tracker.set_alias(CHALLENGER, reg)
        decision = _decide(
            tracker,
            settings,
            tables,
            reg,
            model,
            params,
            config.config_hash(),
            protocol,
            metric,
            value,
            min_improve,
            str(fingerprint["sha256"]),
            dataset,
        )
        tracker.log(
            run_id,
            tags={
                "promotion.decision": "promoted" if decision["promoted"] else "kept champion",
                "promotion.reason": decision["reason"],
                "registered_version": reg,
                "bundle_version": version,
            },
            metrics={
                k: v for k, v in decision.items() if k in ("challenger_value", "champion_value")
            },
        )
        if decision["promoted"]:
            step("promote")
            previous = current_version(settings.bundles_dir)
            set_current(settings.bundles_dir, version)
            tracker.crown(reg)
            keep = {version} | ({previous} if previous else set())
            prune(settings.bundles_dir, settings.bundle_retention, keep=keep)
            notify_service(settings)
        ok = True
    finally:
        tracker.end_run(run_id, ok)
    logger.info("run %s: version %s, %s", run_id, version, decision["reason"])
    return TrainResult(
        version,
        model,
        names,
        fingerprint,
        metrics,
        time.perf_counter() - t0,
        promoted=bool(decision["promoted"]),
        decision=decision,
        run_id=run_id,
        registered_version=reg,
        feedback=fb_counts,
    )


def _evaluate_model(
    tables: Tables, protocol: str, model: str, params: dict[str, Any], dataset: str
) -> dict[str, Any]:
    """One seed of one model under a protocol, at k = 10 and 20 (what promotion compares)."""
    return run_evaluation(
        tables, cast(Protocol, protocol), [model], [10, 20], seeds=1, params=params, dataset=dataset
    )


def _evaluate(
    tracker: Tracker,
    run_id: str,
    tables: Tables,
    protocol: str,
    model: str,
    params: dict[str, dict[str, Any]],
    dataset: str,
) -> dict[str, Any]:
    """Evaluate the default strategy; log metrics, the JSON and the plot."""
    result = _evaluate_model(tables, protocol, model, params, dataset)
    metrics = {"protocol": protocol, **result["models"][model]}
    tracker.log(run_id, metrics={k: v for k, v in metrics.items() if not k.endswith("_se")})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evaluation.json"
        path.write_text(json.dumps(result, indent=2))
        tracker.log_artifact(run_id, path, "evaluation")
        if protocol != "kfold-rating":
            plot = Path(tmp) / "evaluation.png"
            plot_results(result, plot)
            tracker.log_artifact(run_id, plot, "evaluation")
    return metrics


def _decide(
    tracker: Tracker,
    settings: Settings,
    tables: Tables,
    challenger: str,
    model: str,
    params: dict[str, dict[str, Any]],
    config_hash: str,
    protocol: str,
    metric: str,
    value: float | None,
    min_improve: float,
    fingerprint: str,
    dataset: str,
) -> dict[str, Any]:
    """The promotion rule: same protocol, same data, ``metric`` better by ``min_improve``."""
    champion = tracker.alias_version(CHAMPION)
    out: dict[str, Any] = {
        "metric": metric,
        "protocol": protocol,
        "min_improve": min_improve,
        "challenger": challenger,
        "champion": champion,
        "challenger_value": value,
    }
    if champion is None:
        return out | {"promoted": True, "reason": "first model: no champion yet"}
    if value is None:
        return out | {"promoted": True, "reason": "not evaluated: promoted by request"}
    tags = tracker.version_tags(champion)
    if (
        tags.get("protocol") == protocol
        and tags.get("data_fingerprint") == fingerprint
        and tags.get("metric_value")
        and tags.get("metric") == metric
    ):
        champ = float(tags["metric_value"])
        how = "champion's own evaluation (same protocol and data)"
    elif tags.get("config_hash") == config_hash and tags.get("model") == model:
        champ = float(value)
        how = "same configuration as the champion: equal on the same data (a refresh)"
    else:
        champ_model = tags.get("model", model)
        champ_params = {champ_model: json.loads(tags.get("params_json", "{}"))}
        result = _evaluate_model(tables, protocol, champ_model, champ_params, dataset)
        champ = float(result["models"][champ_model][metric])
        how = "champion's configuration re-evaluated on this data and protocol"
    better = _better(metric, float(value), champ, min_improve)
    reason = (
        f"{metric} {float(value):.4f} vs champion v{champion} {champ:.4f} "
        f"({how}); min_improve {min_improve}: {'promoted' if better else 'kept champion'}"
    )
    return out | {"promoted": better, "reason": reason, "champion_value": champ}


def notify_service(settings: Settings) -> bool:
    """Ask a running service to reload now (it also polls CURRENT); False when unreachable."""
    if not settings.service_url:
        return False
    headers = {"Authorization": f"Bearer {settings.admin_token}"} if settings.admin_token else {}
    try:
        r = httpx.post(
            f"{settings.service_url.rstrip('/')}/admin/reload-model", headers=headers, timeout=60
        )
        return r.status_code < 300
    except httpx.HTTPError as e:
        logger.warning("service at %s not told about the new model: %s", settings.service_url, e)
        return False
