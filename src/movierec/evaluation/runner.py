"""Run models through a protocol over seeds; aggregate means and standard errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from movierec.data.catalog import Catalog
from movierec.data.splits import (
    DESCRIPTIONS,
    PROTOCOLS,
    Protocol,
    Split,
    Stage,
    kfold_rating,
    make_split,
)
from movierec.data.tables import Tables
from movierec.evaluation import metrics
from movierec.models.base import Recommender, TrainOptions
from movierec.models.memory import DataShape, available_bytes, check_fits
from movierec.models.mf import BiasedMF
from movierec.ranking.config import LabelSplit, RankedConfig
from movierec.ranking.features import FEATURE_GROUPS
from movierec.ranking.ranker import RankedRecommender
from movierec.strategies import STRATEGIES, create
from movierec.types import RecBatch

logger = logging.getLogger(__name__)

#: Protocols whose held-out interactions come after the training history in time.
FUTURE_TARGET_PROTOCOLS = ("leave-last-out", "temporal")
ProgressFn = Callable[[str], None]


#: The ranker's label split that matches each ranking protocol (how its labels are held out).
LABEL_SPLITS: dict[str, LabelSplit] = {
    "leave-last-out": "last",
    "temporal": "temporal",
    "stratified": "random",
    "strong-generalization": "random",
}


def protocol_params(
    name: str, params: dict[str, Any] | None, protocol: Protocol
) -> dict[str, Any] | None:
    """A model's config overrides for a protocol: ``ranked`` holds labels out like it."""
    if not issubclass(STRATEGIES.get(name, Recommender), RankedRecommender):
        return params
    return {"label_split": LABEL_SPLITS.get(protocol, "last"), **(params or {})}


def recommend_split(model: Recommender, split: Split, k: int, batch: int = 1024) -> RecBatch:
    """Top-k for every query row of a split (known users, or fold-in histories)."""
    items, scores = [], []
    n = split.truth.shape[0]
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        if split.users is not None:
            rb = model.recommend(split.users[start:stop], k)
        else:
            assert split.history is not None
            ts = split.history_ts[start:stop] if split.history_ts is not None else None
            rb = model.recommend_history(split.history[start:stop], k, timestamps=ts)
        items.append(rb.items)
        scores.append(rb.scores)
    if not items:
        return RecBatch(np.zeros((0, k), np.int32), np.zeros((0, k), np.float32))
    return RecBatch(np.vstack(items), np.vstack(scores))


def evaluate_split(
    model: Recommender, split: Split, ks: list[int], catalog: Catalog, relevance: float | None
) -> dict[str, Any]:
    """Accuracy and beyond-accuracy metrics of a fitted model on one split (means over users)."""
    truth = split.truth
    if relevance is not None:
        truth = sp.csr_matrix(truth.multiply(truth >= relevance))
        truth.eliminate_zeros()
    kmax = max(ks)
    recs = recommend_split(model, split, kmax).items
    per_user, evaluated = metrics.ranking_metrics(recs, truth, ks)
    out: dict[str, Any] = {name: float(v.mean()) if v.size else 0.0 for name, v in per_user.items()}
    pop = np.bincount(split.train.matrix.indices, minlength=split.train.n_items).astype(np.float64)
    ev = recs[evaluated]
    for k in ks:
        out[f"coverage@{k}"] = metrics.coverage(ev, split.train.n_items, k)
        out[f"novelty@{k}"] = float(np.nanmean(metrics.novelty(ev, pop, split.train.n_users, k)))
        out[f"popularity_bias@{k}"] = float(
            np.nanmean(metrics.popularity_bias(ev, pop, split.train.n_users, k))
        )
        if catalog.genres.shape[1]:
            out[f"diversity@{k}"] = float(
                np.nanmean(metrics.intra_list_diversity(ev, catalog.genres, k))
            )
        out[f"long_tail@{k}"] = metrics.long_tail_share(ev, pop, k)
    out |= _by_activity(split, per_user, evaluated, ev, pop, ks)
    out["users_evaluated"] = int(evaluated.sum())
    out["users_skipped_no_relevant"] = int((~evaluated).sum())
    return out


def _by_activity(
    split: Split,
    per_user: dict[str, np.ndarray],
    evaluated: np.ndarray,
    recs: np.ndarray,
    pop: np.ndarray,
    ks: list[int],
) -> dict[str, Any]:
    """Every ranking metric and the long-tail share per user-activity group.

    Keys are ``<group>:<metric>`` (``cold:ndcg@10``) and ``users_<group>``; activity is the
    number of training interactions (the fold-in history for held-out users); a group without
    users has no keys.
    """
    if split.users is not None:
        activity = np.diff(split.train.matrix.indptr)[split.users]
    else:
        assert split.history is not None
        activity = np.diff(split.history.indptr)
    out: dict[str, Any] = {}
    for group, mask in metrics.activity_groups(activity[evaluated]).items():
        out[f"users_{group}"] = int(mask.sum())
        if not mask.any():
            continue
        out |= {f"{group}:{name}": float(v[mask].mean()) for name, v in per_user.items()}
        for k in ks:
            out[f"{group}:long_tail@{k}"] = metrics.long_tail_share(recs[mask], pop, k)
    return out


def _mean_se(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    se = float(arr.std(ddof=1) / np.sqrt(arr.size)) if arr.size > 1 else 0.0
    return float(arr.mean()), se


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in runs[0]:
        vals = [r[key] for r in runs if key in r]
        if all(isinstance(v, int | float) for v in vals):
            mean, se = _mean_se([float(v) for v in vals])
            out[key] = mean
            if not key.startswith(("users_", "fit_", "skipped_")):
                out[f"{key}_se"] = se
    return out


def default_models(protocol: str) -> list[str]:
    """What ``movierec evaluate`` compares when no model is named.

    ``mf`` for rating prediction (``kfold-rating``), every strategy otherwise.
    """
    return ["mf"] if protocol == "kfold-rating" else list(STRATEGIES)


def check_request(protocol: str, models: list[str]) -> Protocol:
    """Validate a protocol and model names before any data is read.

    Raises:
        ValueError: Unknown protocol or model (the message lists the known ones).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use {', '.join(PROTOCOLS)}")
    unknown = [m for m in models if m not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(STRATEGIES)}")
    return protocol


def evaluation_steps(protocol: str, models: list[str], seeds: int, ablation: bool) -> int:
    """How many fits :func:`run_evaluation` will report through ``progress``."""
    entries = len(set(models) | ({"ranked"} if ablation else set()))
    entries += len(ablation_variants()) if ablation else 0
    return entries * seeds * (5 if protocol == "kfold-rating" else 1)


def run_evaluation(
    tables: Tables,
    protocol: Protocol,
    models: list[str],
    ks: list[int],
    seeds: int = 1,
    params: dict[str, dict[str, Any]] | None = None,
    stage: Stage = "test",
    relevance: float | None = None,
    dataset: str = "",
    progress: ProgressFn | None = None,
    ablation: bool = False,
    memory_limit: str | None = None,
) -> dict[str, Any]:
    """Evaluate models on a protocol over ``seeds`` seeds (0, 1, ...).

    ``memory_limit`` caps the memory the run may plan for (the ``memory_limit`` setting); a
    model that cannot fit stops the run before anything is fitted.

    ``ablation`` adds ``ranked`` with each candidate source and each feature group removed
    (:func:`ablation_variants`). When ``ranked`` is compared with other models, the result
    carries its paired ``comparison`` with each of them.

    Returns:
        ``{"dataset", "protocol", "protocol_description", "k", "seeds", "stage",
        "models": {name: {"recall@10": mean, "recall@10_se": se, ...}}}``.
    """
    params = params or {}
    if protocol == "kfold-rating":
        return _run_kfold(tables, seeds, params, dataset, progress, stage)
    models = list(dict.fromkeys([*models, *(["ranked"] if ablation else [])]))
    entries: dict[str, tuple[str, dict[str, Any] | None]] = {m: (m, params.get(m)) for m in models}
    entries |= ablation_variants(params.get("ranked")) if ablation else {}
    per_model: dict[str, list[dict[str, Any]]] = {m: [] for m in entries}
    reports: dict[str, dict[str, Any]] = {}
    skipped: list[dict[str, int]] = []
    for seed in range(seeds):
        split = make_split(protocol, tables.ratings, seed, stage)
        skipped.append(split.skipped)
        catalog = Catalog.build(split.train.items, tables.movies, tables.tags)
        train = split.train.with_side(catalog)
        options = TrainOptions(seed=seed, future_targets=protocol in FUTURE_TARGET_PROTOCOLS)
        if seed == 0:  # refuse before fitting anything when a model cannot fit
            check_fits(
                (create(n, protocol_params(n, p, protocol)) for n, p in entries.values()),
                DataShape(train.n_users, train.n_items, train.nnz),
                together=False,
                what="evaluation",
                available=available_bytes(memory_limit),
            )
        for label, (name, model_params) in entries.items():
            if progress is not None:
                progress(f"{label} seed {seed}")
            t0 = time.perf_counter()
            model = create(name, protocol_params(name, model_params, protocol)).fit(train, options)
            fit_s = time.perf_counter() - t0
            res = evaluate_split(model, split, ks, catalog, relevance)
            res["fit_seconds"] = fit_s
            res["eval_seconds"] = time.perf_counter() - t0 - fit_s
            res |= _diagnostics(model, split)
            per_model[label].append(res)
            if seed == 0 and isinstance(model, RankedRecommender):
                reports[label] = {
                    "feature_importance": model.feature_importance(),
                    "training": model.training_report,
                }
            logger.info(
                "%s seed %d: %s",
                label,
                seed,
                {k: round(v, 4) for k, v in res.items() if k.startswith(("recall@", "ndcg@"))},
            )
    result: dict[str, Any] = {
        "dataset": dataset,
        "protocol": protocol,
        "protocol_description": DESCRIPTIONS[protocol],
        "stage": stage,
        "relevance": "every held-out interaction"
        if relevance is None
        else f"rating >= {relevance}",
        "recency_weighting": "applied (targets are future events)"
        if protocol in FUTURE_TARGET_PROTOCOLS
        else "not applied (random hold-out: no held-out item is more recent than the history)",
        "k": ks,
        "seeds": seeds,
        "skipped_test_interactions": skipped[0] if skipped else {},
        "models": {m: _aggregate(runs) for m, runs in per_model.items() if runs},
        "per_seed": {
            m: [{k: v for k, v in r.items() if k.startswith(PAIRED_METRICS)} for r in runs]
            for m, runs in per_model.items()
        },
        "reports": reports,
    }
    if "ranked" in result["models"] and len(result["models"]) > 1:
        result["comparison"] = comparison(result, "ranked")
    return result


#: Metrics kept per seed so that differences between models can be paired by seed.
PAIRED_METRICS = ("recall@", "ndcg@", "map@", "hit@", "precision@")


def _diagnostics(model: Recommender, split: Split) -> dict[str, float]:
    """Candidate recall of multi-stage models on the split's held-out items."""
    if not isinstance(model, RankedRecommender):
        return {}
    if split.users is not None:
        ts = model.history_ts[split.users] if model.history_ts is not None else None
        return model.diagnostics(model.history[split.users], ts, split.truth)
    assert split.history is not None
    return model.diagnostics(split.history, split.history_ts, split.truth)


def paired_difference(
    result: dict[str, Any], model: str, baseline: str, metric: str
) -> tuple[float, float]:
    """Mean over seeds of ``model - baseline`` on ``metric`` and its standard error."""
    a = [r[metric] for r in result["per_seed"][model]]
    b = [r[metric] for r in result["per_seed"][baseline]]
    return _mean_se([x - y for x, y in zip(a, b, strict=True)])


def comparison(
    result: dict[str, Any], model: str = "ranked", metrics: tuple[str, ...] = ()
) -> dict[str, Any]:
    """How ``model`` compares with every other evaluated model, paired by seed.

    Returns:
        ``{"model", "best_single": name by ndcg@<first k>, "differences": {other: {metric:
        {"diff", "se"}}}}``; empty when ``model`` was not evaluated.
    """
    if model not in result.get("per_seed", {}):
        return {}
    k0 = result["k"][0]
    metrics = metrics or tuple(f"{m}@{k}" for k in result["k"] for m in ("recall", "ndcg"))
    singles = [m for m in result["models"] if m != model and not m.startswith(f"{model}-")]
    best = max(singles, key=lambda m: result["models"][m].get(f"ndcg@{k0}", 0.0), default=None)
    diffs: dict[str, Any] = {}
    for other in result["models"]:
        if other == model:
            continue
        diffs[other] = {}
        for metric in metrics:
            d, se = paired_difference(result, model, other, metric)
            diffs[other][metric] = {"diff": d, "se": se}
    return {"model": model, "best_single": best, "differences": diffs}


def ablation_variants(params: dict[str, Any] | None = None) -> dict[str, tuple[str, Any]]:
    """The ranked model with each candidate source and each feature group removed.

    Also the HistGradientBoosting baseline learner. Labels name what was changed.
    """
    base = dict(params or {})
    cfg = RankedConfig.model_validate(base)
    out: dict[str, tuple[str, Any]] = {}
    for src in cfg.sources:
        rest = tuple(s for s in cfg.sources if s != src)
        out[f"ranked-no-{src}"] = ("ranked", {**base, "sources": rest})
    for group in ("source", *FEATURE_GROUPS):
        out[f"ranked-no-{group}-features"] = (
            "ranked",
            {**base, "drop_groups": (*cfg.drop_groups, group)},
        )
    out["ranked-histgb"] = ("ranked", {**base, "learner": "histgb"})
    return out


def _run_kfold(
    tables: Tables,
    seeds: int,
    params: dict[str, dict[str, Any]],
    dataset: str,
    progress: ProgressFn | None,
    stage: Stage,
) -> dict[str, Any]:
    """5-fold RMSE/MAE of ``mf``.

    ``stage="valid"`` uses one inner fold of fold 0's training part, so tuning never sees a
    test fold.
    """
    runs: list[dict[str, Any]] = []
    for seed in range(seeds):
        folds = kfold_rating(tables.ratings, seed)
        if stage == "valid":
            fold = np.random.default_rng(seed).permutation(tables.ratings.num_rows) % 5
            inner = tables.ratings.filter(pa.array(fold != 0))
            folds = kfold_rating(inner, seed + 1000)[:1]
        for f, split in enumerate(folds):
            if progress is not None:
                progress(f"mf seed {seed} fold {f}")
            model = create("mf", params.get("mf")).fit(split.train, TrainOptions(seed=seed))
            assert isinstance(model, BiasedMF) and split.users is not None
            t = split.truth.tocoo()
            pred = model.predict(split.users[t.row], t.col)
            runs.append(
                {
                    "rmse": metrics.rmse(pred, t.data),
                    "mae": metrics.mae(pred, t.data),
                    "ratings_predicted": int(t.nnz),
                }
            )
    return {
        "dataset": dataset,
        "protocol": "kfold-rating",
        "protocol_description": DESCRIPTIONS["kfold-rating"],
        "stage": stage,
        "seeds": seeds,
        "models": {"mf": _aggregate(runs)},
    }
