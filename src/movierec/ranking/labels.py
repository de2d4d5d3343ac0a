"""The ranker's label split: training data -> source-fitting part + next-item training queries.

It holds out with the evaluation protocols' own rules (:mod:`movierec.data.splits`): the per-user
time rank of leave-last-out, the temporal protocol's global cutoff, the stratified protocol's
random share.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from movierec.data.interactions import InteractionData
from movierec.data.splits import RANDOM_FRACTION, before_cutoff, random_fraction, rank_in_user
from movierec.ranking.config import LabelSplit

logger = logging.getLogger(__name__)


def label_split(
    data: InteractionData,
    mode: LabelSplit,
    label_items: int,
    seed: int,
    pick: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[InteractionData, sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Split training data into a part to fit the sources on and ranker training queries.

    ``pick`` chooses, from the ids of the queries with history and labels, the (sorted) ones
    to build; only those are materialised (under ``last`` every query repeats its user's
    history: all of them at ML-32M scale are ~300M entries, the ranker samples 20,000).

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
        values, times, labels = _user_queries(u, i, r, ts, keep, label, data.matrix.shape)
        if pick is None:
            return pre, values, times, labels
        valid = np.flatnonzero((np.diff(labels.indptr) > 0) & (np.diff(values.indptr) > 0))
        chosen = pick(valid)
        return pre, values[chosen], times[chosen], labels[chosen]
    return (
        pre,
        *_next_item_queries(u, i, r, ts, label, from_end, data.matrix.shape, pick or (lambda q: q)),
    )


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
    shape: tuple[int, int],
    pick: Callable[[np.ndarray], np.ndarray],
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Query (user, p) for p < n_labels(user): history values, history times, labels.

    Every such query has history (a user keeps at least two interactions before their
    labels) and exactly one label, the user's ``p``-th latest interaction. Only the queries
    ``pick`` returns are built, one row each in their order.
    """
    n_labels = np.bincount(u[label], minlength=shape[0])
    qstart = np.concatenate([[0], np.cumsum(n_labels)])
    chosen = np.asarray(pick(np.arange(int(qstart[-1]))), dtype=np.int64)
    owner = np.searchsorted(qstart, chosen, side="right") - 1  # the user of each query
    p = chosen - qstart[owner]
    # u is sorted (a CSR's rows): each user's interactions are one slice
    first = np.searchsorted(u, np.arange(shape[0]), side="left")
    sizes = np.bincount(u, minlength=shape[0])
    lengths = sizes[owner]
    row = np.repeat(np.arange(chosen.size), lengths)
    offs = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    idx = np.repeat(first[owner], lengths) + offs
    fe, pr = from_end[idx], p[row]
    qshape = (chosen.size, shape[1])
    hist, lab = fe > pr, fe == pr
    values = sp.csr_matrix(
        (r[idx[hist]], (row[hist], i[idx[hist]])), shape=qshape, dtype=np.float32
    )
    times = sp.csr_matrix(
        (ts[idx[hist]].astype(np.float64), (row[hist], i[idx[hist]])), shape=qshape
    )
    values.sort_indices()
    times.sort_indices()
    labels = sp.csr_matrix(
        (np.ones(int(lab.sum()), np.float32), (row[lab], i[idx[lab]])), shape=qshape
    )
    return values, times, labels
