"""``ranked``: multi-source candidates, point-in-time features and a learned ranker.

Training (``fit``) mirrors serving. The training data is split once more in time: each user's
latest interactions (or, under the temporal protocol, everything after a global cutoff; under
random hold-out protocols, a random quarter) become labels, the candidate sources are fitted
on the rest, candidates and features are computed for the label users *as of* the end of
their remaining history, and a LightGBM LambdaRank model (or, as a baseline, a
HistGradientBoosting binary classifier) learns to order the pool with the held-out items as
positives and the rest of the pool as negatives. Then the sources and the feature store are
refitted on all the training data for scoring. Scores outside the candidate pool are far
below every pooled item (ordered by popularity), so top-k is always filled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp

from movierec.data.interactions import InteractionData
from movierec.models.base import Recommender, SharedParts, TrainOptions
from movierec.models.item_knn import NeighbourMatrix, knn_similarity
from movierec.models.memory import DataShape, MemoryNeed
from movierec.ranking.candidates import (
    Candidates,
    candidate_recall,
    generate,
    source_feature_names,
    source_features,
)
from movierec.ranking.config import RankedConfig
from movierec.ranking.cross import cross_features
from movierec.ranking.diversity import mmr
from movierec.ranking.features import (
    CROSS_COLUMNS,
    CROSS_FEATURES,
    DAY,
    FEATURE_GROUPS,
    ITEM_FEATURES,
    USER_FEATURES,
    FeatureStore,
    QueryContext,
)
from movierec.ranking.labels import label_split
from movierec.ranking.learner import Learned, train_learner
from movierec.ranking.reasons import Reason, Trending, reasons_for
from movierec.ranking.sizing import ranked_memory_need
from movierec.types import as_csr

logger = logging.getLogger(__name__)

#: Suffix of a file that stands for a source stored once in the bundle (holds its strategy).
SHARED_REF = ".ref"
#: Score offset of items outside the candidate pool (below any ranker score).
OUTSIDE_POOL = -1.0e4


@dataclass(frozen=True)
class SourceModels:
    """How the ranker makes and loads its candidate sources (given by :mod:`movierec.strategies`).

    Attributes:
        names: Model names a source may have.
        create: ``(name, config overrides) -> unfitted model``.
        load: ``(folder, shared parts) -> model`` saved by :meth:`Recommender.save`.
    """

    names: frozenset[str]
    create: Callable[[str, Mapping[str, Any] | None], Recommender]
    load: Callable[[Path, SharedParts | None], Recommender]


def feature_columns(sources: tuple[str, ...], drop: set[str], has_similarity: bool) -> list[str]:
    """The feature matrix's columns: source, user, item and cross features, less dropped groups."""
    groups = {
        "source": source_feature_names(sources),
        "user": list(USER_FEATURES),
        "item": list(ITEM_FEATURES),
        "cross": [*CROSS_COLUMNS[has_similarity], "log_pop_gap", "year_gap"],
    }
    return [n for g, names in groups.items() if g not in drop for n in names]


class RankedRecommender(NeighbourMatrix, Recommender):
    """Candidates from several models, re-ordered by a learned ranker.

    Item similarity (``similar_items``, "because you watched") is the ranker's own binary
    co-occurrence cosine neighbour matrix.
    """

    name = "ranked"
    needs_history = False  # the pool (popularity among the sources) serves an empty history
    config: RankedConfig

    def __init__(
        self, config: RankedConfig | None = None, *, sources: SourceModels | None = None
    ) -> None:
        super().__init__(config)
        if sources is None:
            raise TypeError("ranked needs its source models: use movierec.strategies.create")
        self.source_models = sources
        unknown = set(self.config.sources) - sources.names
        if unknown:
            raise ValueError(f"unknown candidate sources: {sorted(unknown)}")
        bad = set(self.config.drop_groups) - {"source", *FEATURE_GROUPS}
        if bad:
            raise ValueError(f"unknown feature groups: {sorted(bad)}")
        self.sources: dict[str, Recommender] = {}
        self.store: FeatureStore | None = None
        self.learned = Learned()
        self.feature_names: list[str] = []
        self.as_of_mode: Literal["user_last", "data_end"] = "user_last"
        self.training_report: dict[str, float] = {}

    # ---------------------------------------------------------------- training
    def memory_need(self, shape: DataShape, budget: int) -> MemoryNeed:
        """See :func:`movierec.ranking.sizing.ranked_memory_need`."""
        return ranked_memory_need(self.config, self.source_models.create, shape, budget)

    def _fit(self, x: sp.csr_matrix, data: InteractionData, options: TrainOptions) -> None:
        c = self.config
        mode = c.label_split
        self.as_of_mode = "data_end" if mode == "temporal" else "user_last"
        rng = np.random.default_rng(options.seed)

        def pick(valid: np.ndarray) -> np.ndarray:
            if valid.size <= c.max_train_queries:
                return valid
            return np.sort(rng.choice(valid, c.max_train_queries, replace=False))

        pre, values, ts, truth = label_split(data, mode, c.label_items, options.seed, pick)
        n_queries = values.shape[0]
        src_options = dataclasses.replace(options, future_targets=mode != "random")
        sources, store, sim = self._fit_stages(pre, src_options)
        cands = generate(sources, values, ts, c.per_source)
        self.training_report = {f"train_{k}": v for k, v in candidate_recall(cands, truth).items()}
        y = (np.asarray(truth[cands.rows, cands.items]).ravel() != 0).astype(np.float32)
        has_pos = np.bincount(cands.rows, y, minlength=n_queries) > 0
        keep = has_pos[cands.rows]
        if c.negatives is not None:  # all positives, a random sample of the pool as negatives
            noise = rng.random(y.size) + y  # positives sort last
            order = np.lexsort((noise, cands.rows))
            bounds = cands.bounds(n_queries)
            pos_in_q = np.empty(y.size, np.int64)
            pos_in_q[order] = np.arange(y.size) - bounds[cands.rows[order]]
            size_q = np.diff(bounds)[cands.rows]
            n_pos = np.bincount(cands.rows, y, minlength=n_queries)[cands.rows]
            keep &= (pos_in_q < c.negatives) | (pos_in_q >= size_q - n_pos)
        ctx = self._context(values, ts, store)
        feats, names = self._features(store, sim, ctx, cands, keep)
        y, rows = y[keep], cands.rows[keep]
        self.feature_names = names
        if not y.size or y.min() == y.max():
            raise ValueError("ranker training found no positive (or no negative) candidates")
        self.learned = train_learner(c, feats, y, rows, names, options.seed, options.threads)
        self.training_report |= {
            "train_queries": float(np.unique(rows).size),
            "train_examples": float(y.size),
        }
        # refit the stages on all the training data for scoring, the label-split ones freed
        # first (at ML-32M scale each set of sources is several GB)
        del sources, store, sim, cands, feats, ctx
        self.sources, self.store, self.similarity = self._fit_stages(data, src_options, reuse=True)

    def _fit_stages(
        self, data: InteractionData, options: TrainOptions, reuse: bool = False
    ) -> tuple[dict[str, Recommender], FeatureStore, sp.csr_matrix]:
        sources = {name: self._source(name, data, options, reuse) for name in self.config.sources}
        cat = data.catalog
        if cat is None:
            store = FeatureStore.build(data)
        else:
            store = FeatureStore.build(data, cat.genres, cat.years, cat.genre_names)
        binary = sp.csr_matrix(
            (np.ones(data.matrix.nnz, np.float32), data.matrix.indices, data.matrix.indptr),
            shape=data.matrix.shape,
        )
        sim = knn_similarity(binary.T.tocsr(), neighbors=100, threads=options.threads)
        return sources, store, sim

    def _source(
        self, name: str, data: InteractionData, options: TrainOptions, reuse: bool
    ) -> Recommender:
        """A source fitted on ``data``: the caller's model of that name when it is the same."""
        model = self.source_models.create(name, self.config.source_params.get(name))
        done = (options.fitted or {}).get(name) if reuse else None
        if (
            done is not None
            and done.fitted
            and done.history is data.matrix
            and done.config == model.config
            and done.use_recency == options.future_targets
        ):
            logger.info("ranked: source %s shared with the strategy of that name", name)
            return done
        return model.fit(data, options)

    # ---------------------------------------------------------------- features
    def _context(
        self, values: sp.csr_matrix, ts: sp.csr_matrix | None, store: FeatureStore
    ) -> QueryContext:
        """The queries' histories, as of their latest event (or the data's end: temporal)."""
        ctx = QueryContext.build(values, ts)
        if self.as_of_mode == "data_end":
            return QueryContext(ctx.values, ctx.timestamps, np.maximum(ctx.as_of, store.t_ref))
        return ctx

    def _features(
        self,
        store: FeatureStore,
        sim: sp.csr_matrix,
        ctx: QueryContext,
        cands: Candidates,
        keep: np.ndarray | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """Feature matrix (pairs × features) and the feature names, without dropped groups.

        ``keep`` selects the pairs to return (source features are standardised over the
        whole pool first).
        """
        sel = np.ones(cands.size, bool) if keep is None else keep
        rows, items = cands.rows[sel], cands.items[sel]
        drop = set(self.config.drop_groups)
        has_sim = sim is not None and sim.shape[0] > 0
        names = feature_columns(cands.sources, drop, has_sim)
        if not names:
            return np.zeros((rows.size, 1), np.float32), ["bias"]
        column = {n: j for j, n in enumerate(names)}
        out = np.empty((rows.size, len(names)), np.float32)

        def dest(group: Iterable[str]) -> np.ndarray:
            return np.array([column.get(n, -1) for n in group], np.int64)

        if "source" not in drop:
            where = np.full(cands.size, -1, np.int64)
            where[np.flatnonzero(sel)] = np.arange(rows.size)
            source_features(
                cands, ctx.values.shape[0], where, out, dest(source_feature_names(cands.sources))
            )
        user, taste = store.user_features(ctx)
        if "user" not in drop:
            for k, v in user.items():
                out[:, column[k]] = v[rows]
        if "item" not in drop:
            store.item_features_into(items, ctx.as_of[rows], out, dest(ITEM_FEATURES))
        if "cross" not in drop:
            cross_features(store, ctx, rows, items, taste, user, sim, out, dest(CROSS_FEATURES))
        return out, names

    # ----------------------------------------------------------------- scoring
    def _pool(
        self, values: sp.csr_matrix, timestamps: sp.csr_matrix | None
    ) -> tuple[Candidates, np.ndarray]:
        """Candidates of history rows and the ranker's score of each pair."""
        assert self.store is not None
        cands = generate(self.sources, values, timestamps, self.config.per_source)
        ctx = self._context(values, timestamps, self.store)
        feats, _ = self._features(self.store, self.similarity, ctx, cands)
        return cands, self.learned.predict(feats)

    def score_rows(
        self, values: sp.csr_matrix, timestamps: sp.csr_matrix | None = None
    ) -> np.ndarray:
        """Ranker scores for pooled items; popularity order far below for the rest."""
        self._check_fitted()
        values = as_csr(values, np.float32)
        if timestamps is not None:
            timestamps = as_csr(timestamps, np.float64)
        out = np.tile(self._outside_pool(), (values.shape[0], 1))
        if not values.shape[0]:
            return out
        cands, pred = self._pool(values, timestamps)
        out[cands.rows, cands.items] = pred
        if self.config.diversity > 0:
            self._rerank(out, cands, pred)
        return out

    def _outside_pool(self) -> np.ndarray:
        """Scores of items outside the pool: popularity order far below (made once a store)."""
        assert self.store is not None
        pop = self.store.total_log_pop
        made: tuple[np.ndarray, np.ndarray] | None = self.__dict__.get("_outside")
        if made is None or made[0] is not pop:
            base = OUTSIDE_POOL + pop / max(float(pop.max()), 1.0)
            made = self.__dict__["_outside"] = (pop, base.astype(np.float32))
        return made[1]

    def score_history(self, x: sp.csr_matrix) -> np.ndarray:
        """Scores of weighted rows without times (every event taken as simultaneous)."""
        return self.score_rows(x, None)

    def _rerank(self, out: np.ndarray, cands: Candidates, pred: np.ndarray) -> None:
        assert self.store is not None
        depth = self.config.diversity_depth
        bounds = cands.bounds(out.shape[0])
        for q in range(out.shape[0]):
            a, b = bounds[q], bounds[q + 1]
            if b - a < 2:
                continue
            order = np.argsort(-pred[a:b], kind="stable")[:depth]
            items, scores = cands.items[a:b][order], pred[a:b][order]
            reordered = mmr(items, scores, self.store.item_genres, self.config.diversity)
            top = float(scores.max())
            out[q, reordered] = top + np.arange(reordered.size, 0, -1, dtype=np.float32)

    # --------------------------------------------------------------- diagnostics
    def diagnostics(
        self, values: sp.csr_matrix, timestamps: sp.csr_matrix | None, truth: sp.csr_matrix
    ) -> dict[str, float]:
        """Candidate recall per source and for the merged pool on held-out items."""
        values = sp.csr_matrix(values, dtype=np.float32)
        cands = generate(self.sources, values, timestamps, self.config.per_source)
        return candidate_recall(cands, truth)

    def compile_ranker(self, cache_dir: Path) -> None:
        """Make the parts only serving needs: compiled trees and the trending log.

        The trees are compiled to native code (same scores; see ``compiled``); the trending
        threshold's time-ordered log is built so that a first explanation finds it made.
        """
        from movierec.ranking.compiled import compile_booster

        if self.learned.booster is not None:
            self.learned.compiled = compile_booster(self.learned.booster, cache_dir)
        if self.store is not None:
            self.trending().build()

    def feature_importance(self) -> dict[str, float]:
        """Total gain per feature (LambdaRank), normalised to sum to 1."""
        if self.learned.booster is None:
            return {}
        gain = self.learned.booster.feature_importance("gain").astype(np.float64)
        total = gain.sum() or 1.0
        pairs = sorted(zip(self.feature_names, gain / total, strict=True), key=lambda p: -p[1])
        return {n: float(g) for n, g in pairs}

    def explain(
        self, values: sp.csr_matrix, timestamps: sp.csr_matrix | None, items: np.ndarray
    ) -> list[list[Reason]]:
        """Reasons for recommending ``items`` to one history row (see :mod:`.reasons`)."""
        assert self.store is not None
        values = sp.csr_matrix(values, dtype=np.float32)
        ctx = self._context(values, timestamps, self.store)
        return reasons_for(self.store, self.similarity, self.trending(), ctx, values, items)

    def trending(self) -> Trending:
        """The trending threshold's time-ordered log (per loaded model, not saved)."""
        assert self.store is not None
        made = self.__dict__.get("_trending")
        if made is None or made.store is not self.store:
            made = self.__dict__["_trending"] = Trending(self.store)
        return made

    # ------------------------------------------------------------- persistence
    def _save_extra(self, folder: Path, with_history: bool) -> None:
        booster = self.learned.booster
        if booster is None:
            raise ValueError("only the lambdarank learner can be saved (histgb is a baseline)")
        assert self.store is not None
        for name, model in self.sources.items():
            model.save(folder / "sources" / name, with_history=with_history)
        self.store.save(folder / "features")
        (folder / "ranker.txt").write_text(booster.model_to_string())
        meta = {
            "feature_names": self.feature_names,
            "as_of_mode": self.as_of_mode,
            "training_report": self.training_report,
        }
        (folder / "ranker.json").write_text(json.dumps(meta, indent=2))

    def _load_extra(self, folder: Path, shared: SharedParts | None) -> None:
        self.sources = {}
        for name in self.config.sources:
            ref = folder / "sources" / f"{name}{SHARED_REF}"
            if ref.exists():  # stored once in the bundle: the bundle's own model of that name
                target = ref.read_text().strip()
                if shared is None or target not in shared.models:
                    raise ValueError(f"source {name} refers to {target!r}, not in the bundle")
                self.sources[name] = shared.models[target]
            else:
                self.sources[name] = self.source_models.load(folder / "sources" / name, shared)
        self.store = FeatureStore.load(folder / "features")
        self.learned = Learned(booster=lgb.Booster(model_str=(folder / "ranker.txt").read_text()))
        meta = json.loads((folder / "ranker.json").read_text())
        self.feature_names = list(meta["feature_names"])
        self.as_of_mode = meta["as_of_mode"]
        self.training_report = dict(meta.get("training_report", {}))


__all__ = ["DAY", "RankedConfig", "RankedRecommender", "Reason", "SourceModels"]
