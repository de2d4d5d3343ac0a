"""``train_and_publish``: the one way a model gets from data to a served bundle.

The CLI (`movierec train`), the scheduler and the tests all call it. Order (Gorse's publish
order plus a registry): load data and the feedback received since training -> fit -> evaluate
-> log to MLflow -> write the bundle (not yet current) -> register it as the challenger ->
promote if better (champion alias, then the ``CURRENT`` swap) -> tell the service to reload.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from movierec import __version__
from movierec.data.feedback import FeedbackStore, merge_feedback
from movierec.data.interactions import InteractionData
from movierec.data.splits import PROTOCOLS, Protocol
from movierec.data.tables import Tables, load_tables
from movierec.errors import TrainingBusyError
from movierec.evaluation.plots import plot_results
from movierec.evaluation.report import measure, memory_bytes
from movierec.evaluation.runner import run_evaluation
from movierec.lifecycle.bundle import git_commit, publish_bundle
from movierec.lifecycle.drift_gate import (
    drift_since_serving,
    drift_words,
    log_json,
    save_latest_drift,
)
from movierec.lifecycle.promotion import Challenger, PromotionRule, crown, decide
from movierec.lifecycle.tracking import CHALLENGER, Tracker
from movierec.models.base import Recommender, TrainOptions
from movierec.models.memory import DataShape, available_bytes, check_fits
from movierec.settings import Settings
from movierec.strategies import STRATEGIES, create

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

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what ``movierec train --result-json`` writes)."""
        return dataclasses.asdict(self)


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


@contextlib.contextmanager
def one_training(home: Path, wait: bool = True) -> Iterator[None]:
    """Hold ``home``'s training lock: one training per ``MOVIEREC_HOME`` at a time.

    An advisory ``flock`` on ``home/train.lock``, so the CLI, the scheduler and API jobs (other
    processes) take turns instead of racing for the registry's aliases and ``CURRENT``; the
    kernel drops it when its holder exits, even by ``kill -9``.

    Raises:
        TrainingBusyError: When another training holds it and ``wait`` is false.
    """
    home.mkdir(parents=True, exist_ok=True)
    with (home / "train.lock").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise TrainingBusyError(f"another training is running in {home}") from None
            logger.info("train: waiting for the training running in %s", home)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield  # closing the file (the with block, also on an exception) releases the lock


def train_steps(strategies: tuple[str, ...], model: str, evaluate: bool = True) -> int:
    """How many steps :func:`train_and_publish` reports through ``progress``."""
    return len(set((*strategies, model))) + 3 + int(evaluate)


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
    drift_gate: bool = False,
    force: bool = False,
    wait: bool = True,
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
        drift_gate: Compare the interactions newer than the served bundle's data with the
            older ones first (:mod:`movierec.data.drift`, logged to the run); on strong drift
            the new model is registered but not promoted.
        force: Promote even on strong drift.
        wait: When another training runs in ``settings.home``, wait for it (else raise
            :class:`~movierec.errors.TrainingBusyError`); see :func:`one_training`.

    Returns:
        What was published and decided. A failure raises before ``CURRENT`` or the champion
        alias move, so the served model is never replaced by a broken run; the MLflow run is
        marked FAILED.
    """
    t0 = time.perf_counter()
    params = dict(params or {})
    params.setdefault(
        "popularity", {"mode": settings.popular_by, "min_count": settings.popular_min_ratings}
    )
    rule = PromotionRule.from_settings(settings, metric, min_improve, protocol)
    if rule.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {rule.protocol!r}; use {', '.join(PROTOCOLS)}")
    protocol, metric = rule.protocol, rule.metric
    names = tuple(dict.fromkeys((*strategies, model)))
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(STRATEGIES)}")

    def step(label: str) -> None:
        logger.info("train: %s", label)
        if progress is not None:
            progress(label)

    with one_training(settings.home, wait):
        tables = load_tables(dataset, settings, data_dir)
        fb_counts: dict[str, int] = {"events": 0}
        if use_feedback:
            fb = FeedbackStore.for_settings(settings.home, settings.reveal(settings.database_url))
            try:
                ratings, fb_counts = merge_feedback(tables.ratings, fb.since(0.0))
            finally:
                fb.close()
            tables = tables.with_ratings(ratings)
        data = InteractionData.from_table(tables.ratings)
        fingerprint = data.fingerprint.to_dict()
        drift = drift_since_serving(settings, tables.ratings) if drift_gate else None
        tracker = Tracker(settings)
        models = {n: create(n, params.get(n)) for n in names}
        check_fits(
            models.values(),
            DataShape(data.n_users, data.n_items, data.nnz),
            available=available_bytes(settings.memory_limit),
        )
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
                    "min_improve": rule.min_improve,
                    "config": {n: m.config.model_dump(mode="json") for n, m in models.items()},
                },
                metrics={f"data_{k}": v for k, v in fingerprint.items() if k != "sha256"}
                | {f"feedback_{k}": v for k, v in fb_counts.items()}
                | {f"drift_{k}": v for k, v in ((drift or {}).get("values") or {}).items()},
                tags={"drift.level": drift["level"]} if drift else None,
            )
            if drift is not None:
                log_json(tracker, run_id, drift, "drift.json")
                save_latest_drift(settings, drift | {"run_id": run_id})
            data = data.with_catalog(tables.movies, tables.tags)
            fitted: dict[str, Recommender] = {}
            options = TrainOptions(seed=seed, fitted=fitted)
            costs: dict[str, float] = {}
            # models made of others (ranked) last: they share the sources fitted before them
            for name in sorted(names, key=lambda n: hasattr(models[n], "source_models")):
                step(f"fit {name}")
                with measure() as cost:
                    fitted[name] = models[name].fit(data, options)
                costs |= {f"{name}.{k}": v for k, v in cost.to_dict("fit").items()}
                costs[f"{name}.size_in_memory_mb"] = memory_bytes(fitted[name]) / 2**20
            tracker.log(run_id, metrics=costs)
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
                    "data_max_timestamp": int(pc.max(tables.ratings["timestamp"]).as_py() or 0),
                },
                make_current=False,
            )
            folder = settings.bundles_dir / version
            tracker.log(
                run_id,
                metrics={
                    f"{path.name}.size_on_disk_mb": sum(
                        f.stat().st_size for f in path.rglob("*") if f.is_file()
                    )
                    / 2**20
                    for path in (folder / "models").iterdir()
                }
                | {
                    "bundle_size_mb": sum(
                        f.stat().st_size for f in folder.rglob("*") if f.is_file()
                    )
                    / 2**20
                },
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
            challenger = Challenger(
                reg, model, config.config_hash(), value, str(fingerprint["sha256"])
            )

            def evaluate_champion(champ_model: str, champ_params: dict[str, Any]) -> float:
                result = _evaluate_model(
                    tables, protocol, champ_model, {champ_model: champ_params}, dataset
                )
                return float(result["models"][champ_model][metric])

            decided = decide(tracker, rule, challenger, evaluate_champion)
            if decided.promoted and drift is not None and drift["level"] == "strong" and not force:
                decided = dataclasses.replace(
                    decided,
                    promoted=False,
                    reason="not promoted: strong drift since the served data"
                    f" ({drift_words(drift)}); run with force to promote",
                )
            decision = decided.to_dict()
            tracker.log(
                run_id,
                tags={
                    "promotion.decision": "promoted" if decided.promoted else "kept champion",
                    "promotion.reason": decided.reason,
                    "registered_version": reg,
                    "bundle_version": version,
                },
                metrics={
                    k: v
                    for k, v in decision.items()
                    if k in ("challenger_value", "champion_value") and v is not None
                },
            )
            if decided.promoted:
                step("promote")
                crown(settings, tracker, reg, verify=False)
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
