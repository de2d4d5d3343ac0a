"""The per-user history overlay: training history plus feedback received since, as model input."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from movierec.data.user_feedback import UserFeedback
from movierec.service.catalog import MovieCatalog
from movierec.types import csr


class HistoryOverlay:
    """A user's current history (training rows + feedback) and what to leave out of answers."""

    def __init__(
        self, history: sp.csr_matrix, history_ts: sp.csr_matrix | None, catalog: MovieCatalog
    ) -> None:
        self.history = history
        self.history_ts = history_ts
        self.catalog = catalog
        self.n_items = int(history.shape[1])

    def row(
        self, user_idx: int | None, fb: UserFeedback | None
    ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """History (values, timestamps): training history plus feedback, minus dislikes.

        Feedback counts as the newest events (one second after the latest trained one).
        """
        if user_idx is not None:
            lo, hi = self.history.indptr[user_idx], self.history.indptr[user_idx + 1]
            cols = self.history.indices[lo:hi].astype(np.int64)
            vals = self.history.data[lo:hi].astype(np.float32)
            ts = self.history_ts
            times = ts.data[lo:hi].astype(np.float64) if ts is not None else np.zeros(cols.size)
        else:
            cols, vals, times = np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0)
        if fb is not None:
            newest = (float(times.max()) if times.size else 0.0) + 1.0
            given = fb.positives()
            pos, _ = self.catalog.item_index(list(given))
            ids = self.catalog.items.ids
            if pos.size:
                keep = _outside(cols, pos)
                new = np.array([given[int(ids[i])] for i in pos.tolist()], np.float32)
                cols = np.concatenate([cols[keep], pos])
                vals = np.concatenate([vals[keep], new])
                times = np.concatenate([times[keep], np.full(pos.size, newest)])
            bad, _ = self.catalog.item_index(sorted(fb.disliked))
            if bad.size:
                keep = _outside(cols, bad)
                cols, vals, times = cols[keep], vals[keep], times[keep]
        order = np.argsort(cols, kind="stable")
        indptr = np.array([0, cols.size], np.int32)
        shape = (1, self.n_items)
        return (
            csr(vals[order], cols[order].astype(np.int32), indptr, shape),
            csr(times[order], cols[order].astype(np.int32), indptr, shape),
        )

    def exclusions(
        self, user_idx: int | None, fb: UserFeedback | None, exclude_seen: bool
    ) -> sp.csr_matrix:
        """One row marking the items an answer leaves out: seen ones and any with feedback."""
        parts = [np.zeros(0, np.int64)]
        if exclude_seen and user_idx is not None:
            lo, hi = self.history.indptr[user_idx], self.history.indptr[user_idx + 1]
            parts.append(self.history.indices[lo:hi].astype(np.int64))
        if fb is not None:
            parts.append(self.catalog.item_index(sorted(fb.touched()))[0])
        c = np.unique(np.concatenate(parts)).astype(np.int32)
        indptr = np.array([0, c.size], np.int32)
        return csr(np.ones(c.size, np.float32), c, indptr, (1, self.n_items))


def _outside(cols: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mask of ``cols`` not among ``values`` (a few values: one comparison each)."""
    if values.size > 16:
        return ~np.isin(cols, values)
    keep = np.ones(cols.size, bool)
    for v in values.tolist():
        keep &= cols != v
    return keep
