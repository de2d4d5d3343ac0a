"""Evaluation metrics as pure functions. Per-user values are kept; means are taken by callers.

Ranking metrics take ``recs`` (n × K item indices, ``-1`` padding, best first) and
``relevant`` (CSR n × n_items; stored entries are relevant). Users with no relevant item
must be removed before (see :func:`ranking_metrics`, which reports them).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def hit_matrix(recs: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Boolean (n × K): whether ``recs[u, j]`` is relevant for user ``u``."""
    n_items = relevant.shape[1]
    rel = sp.csr_matrix(relevant)
    rel.sort_indices()
    rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    rel_keys = rows * n_items + rel.indices
    rec_keys = np.arange(recs.shape[0], dtype=np.int64)[:, None] * n_items + recs
    pos = np.searchsorted(rel_keys, rec_keys)
    pos = np.minimum(pos, max(rel_keys.size - 1, 0))
    found = rel_keys[pos] == rec_keys if rel_keys.size else np.zeros(recs.shape, bool)
    return found & (recs >= 0)


def precision(hits: np.ndarray, k: int) -> np.ndarray:
    """Relevant items in the top k, divided by k."""
    return hits[:, :k].sum(axis=1) / k


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Relevant items in the top k, divided by the number of relevant items."""
    return hits[:, :k].sum(axis=1) / n_relevant


def recall_normalized(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Recall divided by ``min(k, |relevant|)`` (reaches 1 when the top k is all relevant)."""
    return hits[:, :k].sum(axis=1) / np.minimum(k, n_relevant)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Binary-relevance NDCG@k: DCG over the ideal DCG of ``min(k, |relevant|)`` hits."""
    disc = _discounts(k)
    dcg = (hits[:, :k] * disc[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal = np.cumsum(disc)[np.minimum(k, n_relevant) - 1]
    return dcg / ideal


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k: mean of precision@j at each relevant position j <= k, over ``min(k, |relevant|)``."""
    h = hits[:, :k].astype(np.float64)
    prec_at = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    return (prec_at * h).sum(axis=1) / np.minimum(k, n_relevant)


def hit_rate(hits: np.ndarray, k: int) -> np.ndarray:
    """1 when any of the top k is relevant."""
    return np.asarray(hits[:, :k].any(axis=1), dtype=np.float64)


def reciprocal_rank(hits: np.ndarray, k: int) -> np.ndarray:
    """1 / rank of the first relevant item within the top k (0 when none)."""
    h = hits[:, :k]
    first = np.argmax(h, axis=1)
    return np.asarray(np.where(h.any(axis=1), 1.0 / (first + 1), 0.0), dtype=np.float64)


def ranking_metrics(
    recs: np.ndarray, relevant: sp.csr_matrix, ks: list[int]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-user accuracy metrics at every k, for users with at least one relevant item.

    Returns:
        ``({"recall@10": per-user array, ...}, evaluated_mask)``.
    """
    n_rel = np.diff(sp.csr_matrix(relevant).indptr)
    evaluated = n_rel > 0
    hits = hit_matrix(recs, relevant)[evaluated]
    n = n_rel[evaluated]
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"precision@{k}"] = precision(hits, k)
        out[f"recall@{k}"] = recall(hits, n, k)
        out[f"recall_norm@{k}"] = recall_normalized(hits, n, k)
        out[f"ndcg@{k}"] = ndcg(hits, n, k)
        out[f"map@{k}"] = average_precision(hits, n, k)
        out[f"hit@{k}"] = hit_rate(hits, k)
        out[f"mrr@{k}"] = reciprocal_rank(hits, k)
    return out, evaluated


def coverage(recs: np.ndarray, n_items: int, k: int) -> float:
    """Fraction of the catalog that appears in anybody's top k."""
    r = recs[:, :k]
    return float(np.unique(r[r >= 0]).size / n_items) if n_items else 0.0


def novelty(recs: np.ndarray, item_popularity: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """Per user, mean self-information ``-log2(pop_i / n_users)`` of the top k."""
    r = recs[:, :k]
    p = np.clip(item_popularity / max(n_users, 1), 1e-12, 1.0)
    info = np.where(r >= 0, -np.log2(p[np.maximum(r, 0)]), np.nan)
    return np.nanmean(info, axis=1)


def popularity_bias(
    recs: np.ndarray, item_popularity: np.ndarray, n_users: int, k: int
) -> np.ndarray:
    """Per user, mean popularity (share of users who interacted) of the top k (ARP)."""
    r = recs[:, :k]
    share = item_popularity / max(n_users, 1)
    vals = np.where(r >= 0, share[np.maximum(r, 0)], np.nan)
    return np.nanmean(vals, axis=1)


def intra_list_diversity(recs: np.ndarray, genres: sp.csr_matrix, k: int) -> np.ndarray:
    """Per user, mean pairwise genre dissimilarity ``1 - Jaccard`` within the top k."""
    g = sp.csr_matrix(genres, dtype=np.float64)
    g.data[:] = 1.0
    sizes = np.asarray(g.sum(axis=1)).ravel()
    out = np.full(recs.shape[0], np.nan)
    for u in range(recs.shape[0]):
        items = recs[u, :k]
        items = items[items >= 0]
        if items.size < 2:
            continue
        sub = g[items]
        inter = np.asarray((sub @ sub.T).todense())
        union = sizes[items][:, None] + sizes[items][None, :] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            jac = np.where(union > 0, inter / union, 1.0)
        iu = np.triu_indices(items.size, 1)
        out[u] = float(np.mean(1.0 - jac[iu]))
    return out


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(predicted, np.float64) - actual) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(predicted, np.float64) - actual)))


#: Metrics where a smaller value is better (every other metric: larger is better).
LOWER_IS_BETTER = ("rmse", "mae")


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` (``rmse``, ``ndcg@10``, ...) are better."""
    return metric.split("@")[0] in LOWER_IS_BETTER


def long_tail_share(
    recs: np.ndarray, item_popularity: np.ndarray, k: int, head: float = 0.2
) -> float:
    """Share of recommended items (top k, all users) outside the ``head`` most popular items.

    The head is the top ``head`` fraction of the catalog by training interactions (ties at the
    boundary count as head).
    """
    r = recs[:, :k]
    r = r[r >= 0]
    if not r.size or not item_popularity.size:
        return 0.0
    n_head = max(1, int(np.ceil(head * item_popularity.size)))
    threshold = np.sort(item_popularity)[::-1][n_head - 1]
    return float(np.mean(item_popularity[r] < threshold))


#: User activity groups: fewer than COLD_MAX training interactions, the top HEAVY_SHARE by
#: activity, and the rest.
COLD_MAX = 20
HEAVY_SHARE = 0.1


def activity_groups(activity: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the user activity groups, given each user's training interactions.

    ``cold``: fewer than 20; ``heavy``: the top 10% by activity (not cold); ``warm``: the rest.
    """
    cold = activity < COLD_MAX
    cut = np.quantile(activity, 1 - HEAVY_SHARE) if activity.size else 0.0
    heavy = (activity >= cut) & ~cold
    return {"cold": cold, "warm": ~cold & ~heavy, "heavy": heavy}
