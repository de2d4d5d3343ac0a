"""Cross features of candidate (query, item) pairs: genre affinity, similarity, gaps.

Each compares the query's history (its genre taste, its latest items, its means) with the
candidate item, and is computed by one compiled pass over the pairs
(``_kernels.cross_features``) straight into the feature matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

import movierec._kernels as _kernels
from movierec.ranking.features import (
    LAST_N,
    FeatureStore,
    QueryContext,
    feature_matrix,
)
from movierec.types import index_arrays, row_lengths


def cross_features(
    store: FeatureStore,
    ctx: QueryContext,
    rows: np.ndarray,
    items: np.ndarray,
    taste: np.ndarray,
    user: dict[str, np.ndarray],
    similarity: sp.csr_matrix | None,
    out: np.ndarray,
    dest: np.ndarray,
) -> None:
    """Write :data:`CROSS_FEATURES` of candidate pairs into columns ``dest`` of ``out``.

    ``rows`` index the queries. Genre affinity is the mean and the max of the query's genre
    taste over the item's genres; ``sim_last_*`` the item's similarity to the query's
    ``LAST_N`` latest items (the latest, the max, the sum over the query's latest count);
    the gaps are the item's log popularity and year minus the query's means. Compiled
    (``_kernels.cross_features``, the similarity rows of a query's latest items scattered
    once per query); ``dest[f] = -1`` skips feature ``f``.
    """
    n_q = ctx.values.shape[0]
    latest = np.full((n_q, LAST_N), -1, np.int64)
    n_last = np.zeros(n_q, np.int64)
    s_indptr, s_indices, s_data = np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0)
    if similarity is not None and similarity.shape[0]:
        ts = ctx.timestamps
        rank = ctx.recency.astype(np.int64)
        q_rows = np.repeat(np.arange(n_q), row_lengths(ts.indptr))
        sel = rank < LAST_N
        latest[q_rows[sel], rank[sel]] = ts.indices[sel]
        n_last = np.minimum(row_lengths(ts.indptr), LAST_N).astype(np.int64)
        s_indptr, s_indices = similarity.indptr, similarity.indices
        s_data = np.ascontiguousarray(similarity.data, np.float32)
    g = store.item_genres
    _kernels.cross_features(
        np.ascontiguousarray(rows, np.int64),
        np.ascontiguousarray(items, np.int64),
        np.ascontiguousarray(taste, np.float64),
        int(taste.shape[1]),
        *_index_pair(g.indptr, g.indices),
        latest,
        LAST_N,
        n_last,
        *_index_pair(s_indptr, s_indices),
        s_data,
        store.total_log_pop,
        np.ascontiguousarray(user["user_mean_log_pop"], np.float64),
        np.ascontiguousarray(store.item_years, np.float64),
        np.ascontiguousarray(user["user_mean_year"], np.float64),
        feature_matrix(out),
        out.shape[1],
        np.ascontiguousarray(dest, np.int64),
    )


def _index_pair(indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """A CSR's index arrays as one integer type (:func:`index_arrays`) and whether int64."""
    ix, ip = index_arrays(np.ascontiguousarray(indices), np.ascontiguousarray(indptr))
    return ip, ix, ix.dtype == np.int64
