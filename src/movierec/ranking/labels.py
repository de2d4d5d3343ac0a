"""The ranker's label split: training data -> source-fitting part + next-item training queries.

It holds out with the evaluation protocols' own rules (:mod:`movierec.data.splits`): the per-user
time rank of leave-last-out, the temporal protocol's global cutoff, the stratified protocol's
random share.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from movierec.data.interactions import InteractionData
from movierec.data.splits import RANDOM_FRACTION, before_cutoff, random_fraction, rank_in_user
from movierec.ranking.config import LabelSplit

logger = logging.getLogger(__name__)


def label_split(
    data: InteractionData, mode: LabelSplit, label_items: int, seed: int
) -> tuple[InteractionData, sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Split training data into a part to fit the sources on and ranker training queries.

    Returns:
        ``(pre, values, timestamps, labels)``: ``pre`` keeps the vocabularies and side data of
        ``data``; the three CSR matrices have one row per training query. Under ``last`` a
        user with ``n >= 3`` interactions gives ``min(label_items, n - 2)`` queries: query
        ``p`` holds everything before the user's ``p``-th latest interaction and predicts
        that one interaction (a next-item example, exactly as at serving time). Under
        ``temporal`` and ``random`` a query is a user: their held-out interactions are its
        labels.
    """
    coo = data.matrix.tocoo()
    u, i, r = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    ts = data.timestamps.astype(np.int64)
    rng = np.random.default_rng(seed)
    from_end = np.zeros(u.size, np.int64)
    if mode == "temporal":
        label = ~before_cutoff(ts)
        seen_before = np.zeros(data.n_users, bool)
        seen_before[u[~label]] = True
        label &= seen_before[u]
    elif mode == "random":
        label = random_fraction(u, rng, RANDOM_FRACTION, np.ones(u.size, bool))
    else:
        pos, sizes = rank_in_user(u, (rng.random(u.size), ts))
        from_end = sizes - 1 - pos
        label = from_end < np.minimum(label_items, sizes - 2)
    keep = ~label
    pre = InteractionData.from_arrays(
        data.users.ids[u[keep]],
        data.items.ids[i[keep]],
        r[keep],
        ts[keep],
        users=data.users,
        items=data.items,
    ).with_side(data.catalog)
    logger.info("ranker labels (%s): %d of %d interactions", mode, label.sum(), u.size)
    if mode != "last":
        return (pre, *_user_queries(u, i, r, ts, keep, label, data.matrix.shape))
    return (pre, *_next_item_queries(u, i, r, ts, label, from_end, label_items, data.matrix.shape))


def _user_queries(
    u: np.ndarray,
    i: np.ndarray,
    r: np.ndarray,
    ts: np.ndarray,
    keep: np.ndarray,
    label: np.ndarray,
    shape: tuple[int, int],
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """One query per user with labels: history values, history times, labels."""
    users = np.unique(u[label])
    row_of = np.full(shape[0], -1, np.int64)
    row_of[users] = np.arange(users.size)
    qshape = (users.size, shape[1])
    hist = keep & (row_of[u] >= 0)

    def csr(mask: np.ndarray, vals: np.ndarray) -> sp.csr_matrix:
        m = sp.csr_matrix((vals[mask], (row_of[u[mask]], i[mask])), shape=qshape)
        m.sort_indices()
        return m

    return (
        csr(hist, r.astype(np.float32)),
        csr(hist, ts.astype(np.float64)),
        csr(label, np.ones(u.size, np.float32)),
    )


def _next_item_queries(
    u: np.ndarray,
    i: np.ndarray,
    r: np.ndarray,
    ts: np.ndarray,
    label: np.ndarray,
    from_end: np.ndarray,
    label_items: int,
    shape: tuple[int, int],
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Query (user, p) for p < n_labels(user): history values, history times, labels."""
    n_labels = np.bincount(u[label], minlength=shape[0])
    qstart = np.concatenate([[0], np.cumsum(n_labels)])
    q_i, q_r, q_t, q_row = [], [], [], []
    for p in range(label_items):
        # history of query p: interactions older than the p-th latest (from_end > p)
        sel = (n_labels > p)[u] & (from_end > p)
        q_row.append(qstart[u[sel]] + p)
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
    labels = sp.csr_matrix(
        (np.ones(int(label.sum()), np.float32), (qstart[u[label]] + from_end[label], i[label])),
        shape=qshape,
    )
    return values, times, labels
