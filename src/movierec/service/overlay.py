"""The per-user history overlay: training history plus feedback received since, as model input."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from movierec.data.feedback import UserFeedback
from movierec.service.catalog import MovieCatalog


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
        items: dict[int, tuple[float, float]] = {}
        if user_idx is not None:
            row = self.history[user_idx]
            ts = self.history_ts[user_idx] if self.history_ts is not None else None
            for j, (i, v) in enumerate(zip(row.indices.tolist(), row.data.tolist(), strict=True)):
                items[i] = (v, float(ts.data[j]) if ts is not None else 0.0)
        if fb is not None:
            newest = max((t for _, t in items.values()), default=0.0) + 1.0
            vals = fb.positives()
            pos, _ = self.catalog.item_index(list(vals))
            for i in pos.tolist():
                items[i] = (float(vals[int(self.catalog.items.ids[i])]), newest)
            bad, _ = self.catalog.item_index(sorted(fb.disliked))
            for i in bad.tolist():
                items.pop(i, None)
        cols = np.fromiter(items.keys(), dtype=np.int64, count=len(items))
        vals_arr = np.array([v for v, _ in items.values()], dtype=np.float32)
        ts_arr = np.array([t for _, t in items.values()], dtype=np.float64)
        zeros = np.zeros(len(items), dtype=np.int64)
        return (
            sp.csr_matrix((vals_arr, (zeros, cols)), shape=(1, self.n_items)),
            sp.csr_matrix((ts_arr, (zeros, cols)), shape=(1, self.n_items)),
        )

    def exclusions(
        self, user_idx: int | None, fb: UserFeedback | None, exclude_seen: bool
    ) -> sp.csr_matrix:
        """One row marking the items an answer leaves out: seen ones and any with feedback."""
        cols: set[int] = set()
        if exclude_seen and user_idx is not None:
            cols |= set(self.history[user_idx].indices.tolist())
        if fb is not None:
            idx, _ = self.catalog.item_index(sorted(fb.touched()))
            cols |= set(idx.tolist())
        c = np.fromiter(cols, dtype=np.int64, count=len(cols))
        return sp.csr_matrix(
            (np.ones(c.size, np.float32), (np.zeros(c.size, np.int64), c)), shape=(1, self.n_items)
        )
