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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp
from pydantic import Field

from movierec.data.interactions import InteractionData
from movierec.models import registry
from movierec.models.base import ModelConfig, Recommender, TrainOptions
from movierec.models.item_knn import NeighbourMatrix, knn_similarity
from movierec.ranking.candidates import DEFAULT_SOURCES, Candidates, candidate_recall, generate
from movierec.ranking.diversity import mmr
from movierec.ranking.features import (
    DAY,
    FEATURE_GROUPS,
    WINDOWS,
    FeatureStore,
    QueryContext,
    cross_features,
)

logger = logging.getLogger(__name__)

LabelSplit = Literal["auto", "last", "temporal", "random"]
#: Score offset of items outside the candidate pool (below any ranker score).
OUTSIDE_POOL = -1.0e4


class RankedConfig(ModelConfig):
    """Multi-stage ranker settings.

    Attributes:
        sources: Candidate sources (model names).
        source_params: Config overrides per source.
        per_source: Items each source proposes per user (150: pool recall rises with it;
            chosen on the leave-last-out validation split from 100 and 150).
        learner: ``lambdarank`` (LightGBM) or ``histgb`` (scikit-learn binary classifier,
            an evaluation baseline; it is not saved into bundles).
        drop_groups: Feature groups left out (``source``, ``user``, ``item``, ``cross``).
        label_split: How training labels are held out: ``last`` (each user's latest
            ``label_items``), ``temporal`` (after a global 80% time cutoff), ``random`` (a
            random 25% per user) or ``auto`` (like the evaluation protocol; ``last`` when
            serving).
        label_items: Latest interactions per user turned into next-item training queries
            under ``last`` (16 was chosen on the leave-last-out validation split; more queries
            per user was better up to there).
        max_train_queries: Queries sampled for ranker training.
        negatives: Pool items drawn at random per training query as negatives (``None``:
            the whole pool).
        n_estimators: Boosting rounds (early stopping on 10% of the training users).
        learning_rate: Boosting learning rate.
        num_leaves: Leaves per tree.
        min_child_samples: Least examples per leaf.
        diversity: MMR weight over genres in [0, 1); 0 = no re-rank.
        diversity_depth: How many top items the MMR re-rank reorders.
    """

    sources: tuple[str, ...] = DEFAULT_SOURCES
    source_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    per_source: int = Field(default=150, ge=1)
    learner: Literal["lambdarank", "histgb"] = "lambdarank"
    drop_groups: tuple[str, ...] = ()
    label_split: LabelSplit = "auto"
    label_items: int = Field(default=16, ge=1)
    max_train_queries: int = Field(default=20_000, ge=10)
    negatives: int | None = Field(default=100, ge=1)
    n_estimators: int = Field(default=400, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=31, ge=2)
    min_child_samples: int = Field(default=20, ge=1)
    diversity: float = Field(default=0.0, ge=0, lt=1)
    diversity_depth: int = Field(default=50, ge=2)


@dataclass(frozen=True)
class Reason:
    """Why an item was recommended: a code and its detail (item index, genre indices...)."""

    code: str
    item: int | None = None
    genres: tuple[int, ...] = ()


def source_feature_names(sources: tuple[str, ...]) -> list[str]:
    """Names of the candidate-source features."""
    names = []
    for s in sources:
        names += [f"{s}_score", f"{s}_rank", f"{s}_z"]
    return [*names, "n_sources"]


class RankedRecommender(NeighbourMatrix, Recommender):
    """Candidates from several models, re-ordered by a learned ranker.

    Item similarity (``similar_items``, "because you watched") is the ranker's own binary
    co-occurrence cosine neighbour matrix.
    """

    name = "ranked"
    config_class = RankedConfig
    config: RankedConfig

    def __init__(self, config: RankedConfig | None = None) -> None:
        super().__init__(config)
        unknown = set(self.config.sources) - set(registry.MODELS) - {self.name}
        if unknown:
            raise ValueError(f"unknown candidate sources: {sorted(unknown)}")
        bad = set(self.config.drop_groups) - {"source", *FEATURE_GROUPS}
        if bad:
            raise ValueError(f"unknown feature groups: {sorted(bad)}")
        self.sources: dict[str, Recommender] = {}
        self.store: FeatureStore | None = None
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)
        self.booster: lgb.Booster | None = None
        self.classifier: Any = None
        self.classifier_columns = np.zeros(0, np.int64)
        self.feature_names: list[str] = []
        self.as_of_mode: Literal["user_last", "data_end"] = "user_last"
        self.training_report: dict[str, float] = {}

    # ---------------------------------------------------------------- training
    def _fit(self, x: sp.csr_matrix, data: InteractionData, options: TrainOptions) -> None:
        c = self.config
        mode = self._label_mode(options)
        self.as_of_mode = "data_end" if mode == "temporal" else "user_last"
        pre, q_values, q_ts, q_labels = _label_split(data, mode, c.label_items, options.seed)
        queries = np.flatnonzero((np.diff(q_labels.indptr) > 0) & (np.diff(q_values.indptr) > 0))
        rng = np.random.default_rng(options.seed)
        if queries.size > c.max_train_queries:
            queries = np.sort(rng.choice(queries, c.max_train_queries, replace=False))
        src_options = dataclasses.replace(options, future_targets=mode != "random")
        sources, store, sim = self._fit_stages(pre, src_options)
        values, ts, truth = q_values[queries], q_ts[queries], q_labels[queries]
        cands = generate(sources, values, ts, c.per_source)
        self.training_report = {f"train_{k}": v for k, v in candidate_recall(cands, truth).items()}
        y = (np.asarray(truth[cands.rows, cands.items]).ravel() != 0).astype(np.float32)
        has_pos = np.bincount(cands.rows, y, minlength=queries.size) > 0
        keep = has_pos[cands.rows]
        if c.negatives is not None:  # all positives, a random sample of the pool as negatives
            noise = rng.random(y.size) + y  # positives sort last
            order = np.lexsort((noise, cands.rows))
            bounds = cands.bounds(queries.size)
            pos_in_q = np.empty(y.size, np.int64)
            pos_in_q[order] = np.arange(y.size) - bounds[cands.rows[order]]
            size_q = np.diff(bounds)[cands.rows]
            n_pos = np.bincount(cands.rows, y, minlength=queries.size)[cands.rows]
            keep &= (pos_in_q < c.negatives) | (pos_in_q >= size_q - n_pos)
        ctx = self._context(values, ts, store)
        feats, names = self._features(store, sim, ctx, cands, keep)
        y, rows = y[keep], cands.rows[keep]
        self.feature_names = names
        if not y.size or y.min() == y.max():
            raise ValueError("ranker training found no positive (or no negative) candidates")
        self._train(feats, y, rows, options)
        self.training_report |= {
            "train_queries": float(np.unique(rows).size),
            "train_examples": float(y.size),
        }
        # refit the stages on all the training data for scoring
        self.sources, self.store, self.similarity = self._fit_stages(data, src_options)

    def _label_mode(self, options: TrainOptions) -> Literal["last", "temporal", "random"]:
        if self.config.label_split != "auto":
            return self.config.label_split
        if options.protocol == "temporal":
            return "temporal"
        if options.protocol in ("stratified", "strong-generalization"):
            return "random"
        return "last"

    def _fit_stages(
        self, data: InteractionData, options: TrainOptions
    ) -> tuple[dict[str, Recommender], FeatureStore, sp.csr_matrix]:
        sources = {
            name: registry.create(name, self.config.source_params.get(name)).fit(data, options)
            for name in self.config.sources
        }
        store = FeatureStore.build(
            data, options.item_genres, options.item_years, options.genre_names
        )
        binary = sp.csr_matrix(
            (np.ones(data.matrix.nnz, np.float32), data.matrix.indices, data.matrix.indptr),
            shape=data.matrix.shape,
        )
        sim = knn_similarity(binary.T.tocsr(), neighbors=100)
        return sources, store, sim

    def _train(self, feats: np.ndarray, y: np.ndarray, rows: np.ndarray, opt: TrainOptions) -> None:
        c = self.config
        rng = np.random.default_rng(opt.seed)
        uq = np.unique(rows)
        valid_q = set(rng.choice(uq, max(1, uq.size // 10), replace=False).tolist())
        is_valid = np.fromiter((r in valid_q for r in rows.tolist()), bool, rows.size)
        threads = opt.threads or 0
        if c.learner == "histgb":
            from sklearn.ensemble import HistGradientBoostingClassifier

            clf = HistGradientBoostingClassifier(
                max_iter=c.n_estimators,
                learning_rate=c.learning_rate,
                max_leaf_nodes=c.num_leaves,
                min_samples_leaf=c.min_child_samples,
                early_stopping=True,
                validation_fraction=0.1,
                random_state=opt.seed,
            )
            # a column with no value at all (e.g. no release years) cannot be binned
            self.classifier_columns = np.flatnonzero(np.isfinite(feats).any(axis=0))
            self.classifier = clf.fit(feats[:, self.classifier_columns], y)
            return
        tr, va = ~is_valid, is_valid
        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "learning_rate": c.learning_rate,
            "num_leaves": c.num_leaves,
            "min_data_in_leaf": c.min_child_samples,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambdarank_truncation_level": 20,
            "seed": opt.seed,
            "deterministic": True,
            "num_threads": threads,
            "verbose": -1,
        }
        dtrain = lgb.Dataset(
            feats[tr], y[tr], group=_group_sizes(rows[tr]), feature_name=self.feature_names
        )
        callbacks: list[Any] = []
        valid_sets = []
        if va.any() and tr.any():
            dvalid = lgb.Dataset(feats[va], y[va], group=_group_sizes(rows[va]), reference=dtrain)
            valid_sets = [dvalid]
            callbacks = [lgb.early_stopping(40, verbose=False)]
        self.booster = lgb.train(
            params, dtrain, c.n_estimators, valid_sets=valid_sets, callbacks=callbacks
        )

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
        cols: dict[str, np.ndarray] = {}
        drop = set(self.config.drop_groups)
        if "source" not in drop:
            bounds = cands.bounds(ctx.values.shape[0])
            for j, s in enumerate(cands.sources):
                sc = cands.scores[:, j].astype(np.float64)
                cols[f"{s}_score"] = sc[sel]
                cols[f"{s}_rank"] = cands.ranks[sel, j].astype(np.float64)
                cols[f"{s}_z"] = _z_within(sc, bounds)[sel]
            cols["n_sources"] = cands.proposed[sel].sum(axis=1).astype(np.float64)
        user, taste = store.user_features(ctx)
        if "user" not in drop:
            cols |= {k: v[rows] for k, v in user.items()}
        if "item" not in drop:
            cols |= store.item_features(items, ctx.as_of[rows])
        if "cross" not in drop:
            cols |= cross_features(store, ctx, rows, items, taste, user, sim)
        names = list(cols)
        if not names:
            return np.zeros((rows.size, 1), np.float32), ["bias"]
        return np.column_stack([cols[n] for n in names]).astype(np.float32), names

    # ----------------------------------------------------------------- scoring
    def _pool(
        self, values: sp.csr_matrix, timestamps: sp.csr_matrix | None
    ) -> tuple[Candidates, np.ndarray]:
        """Candidates of history rows and the ranker's score of each pair."""
        assert self.store is not None
        cands = generate(self.sources, values, timestamps, self.config.per_source)
        ctx = self._context(values, timestamps, self.store)
        feats, _ = self._features(self.store, self.similarity, ctx, cands)
        if self.booster is not None:
            pred = self.booster.predict(feats, num_threads=1)
        elif self.classifier is not None:
            pred = self.classifier.predict_proba(feats[:, self.classifier_columns])[:, 1]
        else:
            raise RuntimeError("ranked has no trained ranker")
        return cands, np.asarray(pred, dtype=np.float64)

    def score_rows(
        self, values: sp.csr_matrix, timestamps: sp.csr_matrix | None = None
    ) -> np.ndarray:
        """Ranker scores for pooled items; popularity order far below for the rest."""
        self._check_fitted()
        values = sp.csr_matrix(values, dtype=np.float32)
        if timestamps is not None:
            timestamps = sp.csr_matrix(timestamps, dtype=np.float64)
        n_q = values.shape[0]
        assert self.store is not None
        pop = self.store.total_log_pop
        base = OUTSIDE_POOL + pop / max(float(pop.max()), 1.0)
        out = np.tile(base.astype(np.float32), (n_q, 1))
        if not n_q:
            return out
        cands, pred = self._pool(values, timestamps)
        out[cands.rows, cands.items] = pred
        if self.config.diversity > 0:
            self._rerank(out, cands, pred)
        return out

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
        cands = generate(
            self.sources,
            sp.csr_matrix(values, dtype=np.float32),
            timestamps,
            self.config.per_source,
        )
        return candidate_recall(cands, truth)

    def feature_importance(self) -> dict[str, float]:
        """Total gain per feature (LambdaRank), normalised to sum to 1."""
        if self.booster is None:
            return {}
        gain = self.booster.feature_importance("gain").astype(np.float64)
        total = gain.sum() or 1.0
        pairs = sorted(zip(self.feature_names, gain / total, strict=True), key=lambda p: -p[1])
        return {n: float(g) for n, g in pairs}

    def explain(
        self, values: sp.csr_matrix, timestamps: sp.csr_matrix | None, items: np.ndarray
    ) -> list[list[Reason]]:
        """Reasons for recommending ``items`` to one history row."""
        assert self.store is not None
        values = sp.csr_matrix(values, dtype=np.float32)
        ctx = self._context(values, timestamps, self.store)
        as_of = ctx.as_of
        items = np.asarray(items, dtype=np.int64)
        rows = np.zeros(items.size, np.int64)
        item_f = self.store.item_features(items, as_of[rows])
        _, taste = self.store.user_features(ctx)
        top_genres = set(np.argsort(-taste[0])[:3].tolist()) if taste.shape[1] else set()
        hist = values.indices
        hot = item_f[f"item_n_{WINDOWS[1]}d"]
        recent = self.store.item_features(np.arange(self.n_items), np.full(self.n_items, as_of[0]))
        threshold = np.quantile(recent[f"item_n_{WINDOWS[1]}d"], 0.99) if self.n_items else 0
        out: list[list[Reason]] = []
        for j, i in enumerate(items.tolist()):
            reasons: list[Reason] = []
            if hist.size:
                sims = np.asarray(self.similarity[i, hist].todense()).ravel()
                if sims.size and sims.max() > 0:
                    reasons.append(Reason("because_watched", item=int(hist[int(sims.argmax())])))
            if hot[j] > 0 and hot[j] >= threshold:
                reasons.append(Reason("trending"))
            g = self.store.item_genres[i].indices.tolist()
            match = tuple(x for x in g if x in top_genres)
            if match:
                reasons.append(Reason("genres", genres=match))
            out.append(reasons)
        return out

    # ------------------------------------------------------------- persistence
    def _save_extra(self, folder: Path) -> None:
        if self.booster is None:
            raise ValueError("only the lambdarank learner can be saved (histgb is a baseline)")
        assert self.store is not None
        for name, model in self.sources.items():
            model.save(folder / "sources" / name)
        self.store.save(folder / "features")
        (folder / "ranker.txt").write_text(self.booster.model_to_string())
        meta = {
            "feature_names": self.feature_names,
            "as_of_mode": self.as_of_mode,
            "training_report": self.training_report,
        }
        (folder / "ranker.json").write_text(json.dumps(meta, indent=2))

    def _load_extra(self, folder: Path) -> None:
        self.sources = {
            name: Recommender.load(folder / "sources" / name) for name in self.config.sources
        }
        self.store = FeatureStore.load(folder / "features")
        self.booster = lgb.Booster(model_str=(folder / "ranker.txt").read_text())
        meta = json.loads((folder / "ranker.json").read_text())
        self.feature_names = list(meta["feature_names"])
        self.as_of_mode = meta["as_of_mode"]
        self.training_report = dict(meta.get("training_report", {}))


def _group_sizes(rows: np.ndarray) -> np.ndarray:
    """Sizes of consecutive runs of equal query rows (LightGBM groups)."""
    if not rows.size:
        return np.zeros(0, np.int64)
    change = np.flatnonzero(np.diff(rows)) + 1
    return np.diff(np.concatenate([[0], change, [rows.size]]))


def _z_within(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Standardise values within each query's slice."""
    counts = np.diff(bounds)
    rows = np.repeat(np.arange(counts.size), counts)
    n = np.maximum(counts, 1)
    mean = np.bincount(rows, values, minlength=counts.size) / n
    var = np.bincount(rows, values**2, minlength=counts.size) / n - mean**2
    std = np.sqrt(np.maximum(var, 1e-12))
    return (values - mean[rows]) / std[rows]


def _label_split(
    data: InteractionData, mode: str, label_items: int, seed: int
) -> tuple[InteractionData, sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Split training data into a part to fit the sources on and ranker training queries.

    Returns:
        ``(pre, values, timestamps, labels)``: ``pre`` keeps the vocabularies of ``data``;
        the three CSR matrices have one row per training query. Under ``last`` a user with
        ``n >= 3`` interactions gives ``min(label_items, n - 2)`` queries: query ``p`` holds
        everything before the user's ``p``-th latest interaction and predicts that one
        interaction (a next-item example, exactly as at serving time). Under ``temporal``
        and ``random`` a query is a user: their held-out interactions are its labels.
    """
    coo = data.matrix.tocoo()
    u, i, r = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    ts = data.timestamps.astype(np.int64)
    rng = np.random.default_rng(seed)
    shape = data.matrix.shape
    if mode == "temporal":
        cutoff = np.quantile(ts, 0.8)
        label = ts > cutoff
        seen_before = np.zeros(data.n_users, bool)
        seen_before[u[~label]] = True
        label &= seen_before[u]
        from_end = np.zeros(u.size, np.int64)
    else:
        key = rng.random(u.size) if mode == "random" else ts.astype(np.float64)
        tie = rng.random(u.size)
        order = np.lexsort((tie, key, u))
        su = u[order]
        start = np.searchsorted(su, su, "left")
        size = np.searchsorted(su, su, "right") - start
        from_end = np.empty(u.size, np.int64)
        from_end[order] = size - 1 - (np.arange(u.size) - start)
        sizes = np.empty(u.size, np.int64)
        sizes[order] = size
        if mode == "random":
            take = np.maximum(np.round(sizes * 0.25), 1)
            label = (from_end < take) & (sizes >= 3)
        else:
            label = from_end < np.minimum(label_items, sizes - 2)
    keep = ~label
    pre = InteractionData.from_arrays(
        data.users.ids[u[keep]],
        data.items.ids[i[keep]],
        r[keep],
        ts[keep],
        users=data.users,
        items=data.items,
    )
    logger.info("ranker labels (%s): %d of %d interactions", mode, label.sum(), u.size)
    if mode != "last":
        users = np.unique(u[label])
        row_of = np.full(data.n_users, -1, np.int64)
        row_of[users] = np.arange(users.size)
        qshape = (users.size, shape[1])
        hist = keep & (row_of[u] >= 0)

        def csr(mask: np.ndarray, vals: np.ndarray) -> sp.csr_matrix:
            m = sp.csr_matrix((vals[mask], (row_of[u[mask]], i[mask])), shape=qshape)
            m.sort_indices()
            return m

        return (
            pre,
            csr(hist, r.astype(np.float32)),
            csr(hist, ts.astype(np.float64)),
            csr(label, np.ones(u.size, np.float32)),
        )
    # next-item queries: query (user, p) for p < n_labels(user)
    n_labels = np.bincount(u[label], minlength=data.n_users)
    qstart = np.concatenate([[0], np.cumsum(n_labels)])
    q_u, q_i, q_r, q_t, q_row = [], [], [], [], []
    for p in range(label_items):
        has = n_labels > p
        # history of query p: interactions older than the p-th latest (from_end > p)
        sel = has[u] & (from_end > p)
        q_row.append(qstart[u[sel]] + p)
        q_u.append(u[sel])
        q_i.append(i[sel])
        q_r.append(r[sel])
        q_t.append(ts[sel])
    rows = np.concatenate(q_row)
    qshape = (int(qstart[-1]), shape[1])
    cols = np.concatenate(q_i)
    values = sp.csr_matrix((np.concatenate(q_r), (rows, cols)), shape=qshape, dtype=np.float32)
    times = sp.csr_matrix((np.concatenate(q_t).astype(np.float64), (rows, cols)), shape=qshape)
    values.sort_indices()
    times.sort_indices()
    lab = label
    labels = sp.csr_matrix(
        (np.ones(int(lab.sum()), np.float32), (qstart[u[lab]] + from_end[lab], i[lab])),
        shape=qshape,
    )
    return pre, values, times, labels


__all__ = ["DAY", "RankedConfig", "RankedRecommender", "Reason"]
