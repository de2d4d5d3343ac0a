"""The ranker's learner: LightGBM LambdaRank (saved in bundles) or a HistGB baseline."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

import movierec._kernels as _kernels
from movierec.ranking.config import RankedConfig
from movierec.spare import spare

#: LightGBM's C API on a booster: no ``model_to_string`` (the background compilation) while
#: another thread predicts with it (the background warm, a request) - the pair aborted the
#: process once. Held only around LightGBM's own calls, i.e. until the trees are compiled.
LIGHTGBM_LOCK = threading.Lock()


@dataclass
class Learned:
    """A trained learner: a LambdaRank booster, or a classifier with the columns it reads."""

    booster: lgb.Booster | None = None
    classifier: Any = None
    classifier_columns: np.ndarray | None = None
    #: The booster compiled to native code (:mod:`movierec.ranking.compiled`), when attached.
    compiled: Any = None

    def predict(self, feats: np.ndarray) -> np.ndarray:
        """Score each row of ``feats`` (higher = earlier in the list)."""
        compiled = self.compiled
        pred: Any
        if compiled is not None and spare():  # half of the rows on the spare core
            data = np.ascontiguousarray(feats, dtype=np.float64)
            pred = np.zeros(data.shape[0])
            _kernels.trees_split(compiled_entry(compiled), data, pred, *data.shape)
        elif compiled is not None:
            pred = compiled.predict(np.ascontiguousarray(feats, dtype=np.float64), n_jobs=1)
        elif self.booster is not None:
            with LIGHTGBM_LOCK:
                pred = self.booster.predict(feats, num_threads=1)
        elif self.classifier is not None and self.classifier_columns is not None:
            pred = self.classifier.predict_proba(feats[:, self.classifier_columns])[:, 1]
        else:
            raise RuntimeError("ranked has no trained ranker")
        return np.asarray(pred, dtype=np.float64)


def compiled_entry(compiled: Any) -> int:
    """Address of a compiled model's entry point: ``(data, out, start, end)``, float64 rows.

    Checked to be lleaves' float64 entry (what :func:`movierec._kernels.trees_split` calls).
    """
    import ctypes

    entry = compiled._c_entry_func
    one_output = getattr(compiled, "_n_classes", 1) == 1
    if not one_output or entry.argtypes[0] != ctypes.POINTER(ctypes.c_double):
        raise TypeError("the compiled trees are not lleaves' one-output float64 entry point")
    return int(ctypes.cast(entry, ctypes.c_void_p).value or 0)


def group_sizes(rows: np.ndarray) -> np.ndarray:
    """Sizes of consecutive runs of equal query rows (LightGBM groups)."""
    if not rows.size:
        return np.zeros(0, np.int64)
    change = np.flatnonzero(np.diff(rows)) + 1
    return np.diff(np.concatenate([[0], change, [rows.size]]))


def train_learner(
    c: RankedConfig,
    feats: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    names: list[str],
    seed: int,
    threads: int = 0,
) -> Learned:
    """Fit the configured learner; 10% of the queries are held out for early stopping."""
    rng = np.random.default_rng(seed)
    uq = np.unique(rows)
    valid_q = set(rng.choice(uq, max(1, uq.size // 10), replace=False).tolist())
    is_valid = np.fromiter((r in valid_q for r in rows.tolist()), bool, rows.size)
    if c.learner == "histgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        clf = HistGradientBoostingClassifier(
            max_iter=c.n_estimators,
            learning_rate=c.learning_rate,
            max_leaf_nodes=c.num_leaves,
            min_samples_leaf=c.min_child_samples,
            early_stopping=True,
            validation_fraction=0.1,
            random_state=seed,
        )
        # a column with no value at all (e.g. no release years) cannot be binned
        columns = np.flatnonzero(np.isfinite(feats).any(axis=0))
        return Learned(classifier=clf.fit(feats[:, columns], y), classifier_columns=columns)
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
        "seed": seed,
        "deterministic": True,
        "num_threads": threads,
        "verbose": -1,
    }
    dtrain = lgb.Dataset(feats[tr], y[tr], group=group_sizes(rows[tr]), feature_name=names)
    callbacks: list[Any] = []
    valid_sets = []
    if va.any() and tr.any():
        dvalid = lgb.Dataset(feats[va], y[va], group=group_sizes(rows[va]), reference=dtrain)
        valid_sets = [dvalid]
        callbacks = [lgb.early_stopping(40, verbose=False)]
    booster = lgb.train(params, dtrain, c.n_estimators, valid_sets=valid_sets, callbacks=callbacks)
    return Learned(booster=booster)
