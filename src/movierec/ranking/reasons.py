"""Why the ranker recommended an item: similarity to the history, trending, genres."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from movierec.ranking.features import DAY, WINDOWS, FeatureStore, QueryContext

#: Trending thresholds kept per query time: one per user's latest event.
TRENDING_CACHE = 4096


@dataclass(frozen=True)
class Reason:
    """Why an item was recommended: a code and its detail (item index, genre indices...)."""

    code: str
    item: int | None = None
    genres: tuple[int, ...] = ()


#: Times are clipped to [0, 2^34) in every search of the log (as by the compiled kernel).
TIME_MAX = 1 << 34


class Trending:
    """The trending threshold of a feature store at any time, in O(events in the window).

    The window counts of *all* items at one time are the events of one slice of the log in
    time order: every event's clipped time, ascending, and its item (12 bytes an event, built
    once per loaded model, in the background after a load or at the first explanation); a
    ``bincount`` of the slice gives what two searches per item in the item-ordered log give.
    Thresholds are kept for :data:`TRENDING_CACHE` times (oldest evicted first).
    """

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self._order: tuple[np.ndarray, np.ndarray] | None = None
        self._cache: dict[float, float] = {}

    def build(self) -> tuple[np.ndarray, np.ndarray]:
        """(times ascending, their items): made once."""
        if self._order is None:
            s = self.store
            n_log = int(s.item_start[-1]) if s.n_items else 0
            times = np.clip(s.times[:n_log], 0, TIME_MAX - 1)
            items = np.repeat(np.arange(s.n_items, dtype=np.int32), np.diff(s.item_start))
            order = np.argsort(times, kind="stable")
            self._order = (times[order], items[order])
        return self._order

    def counts(self, as_of: float, days: int = WINDOWS[1]) -> np.ndarray:
        """Events of every item in the ``days`` before ``as_of`` (``item_n_<days>d``)."""
        times, items = self.build()

        def key(t: float) -> int:
            return min(max(int(np.floor(t)), 0), TIME_MAX - 1)

        lo = int(np.searchsorted(times, key(as_of - days * DAY), "right"))
        hi = int(np.searchsorted(times, key(as_of), "right"))
        return np.bincount(items[lo:hi], minlength=self.store.n_items).astype(np.float64)

    def threshold(self, as_of: float) -> float:
        """The 99th percentile over items of their events in the trending window."""
        if as_of not in self._cache:
            if len(self._cache) >= TRENDING_CACHE:
                self._cache.pop(next(iter(self._cache)))
            n = self.store.n_items
            self._cache[as_of] = count_quantile(self.counts(as_of), 0.99) if n else 0.0
        return self._cache[as_of]


def count_quantile(counts: np.ndarray, q: float) -> float:
    """``np.quantile(counts, q)`` (linear method) of non-negative counts, from their non-zeros.

    The two order statistics the interpolation needs are read from the non-zero counts
    (zeros are the smallest values: a few hundred items in a 30-day window instead of the
    whole catalog), then interpolated with NumPy's own arithmetic: ``a + (b - a)·g``, or
    ``b - (b - a)·(1 - g)`` when ``g >= 0.5``. A fifth of ``np.quantile``'s time, same value.
    """
    n = counts.size
    vi = (n - 1) * q
    if vi >= n - 1:
        return float(counts.max())
    lo = math.floor(vi)
    g = vi - lo
    nz = np.sort(counts[counts > 0])  # a sort: a partition of many equal counts is slower
    zeros = n - nz.size

    def at(rank: int) -> float:  # the rank-th smallest count
        return 0.0 if rank < zeros else float(nz[rank - zeros])

    a, b = at(lo), at(lo + 1)
    d = b - a
    return b - d * (1 - g) if g >= 0.5 else a + d * g


def reasons_for(
    store: FeatureStore,
    similarity: sp.csr_matrix,
    trending: Trending,
    ctx: QueryContext,
    values: sp.csr_matrix,
    items: np.ndarray,
) -> list[list[Reason]]:
    """Reasons for recommending ``items`` to the one history row of ``ctx``.

    ``because_watched``: the history item most similar to it (item-kNN similarity);
    ``trending``: its events in the last 30 days are in the catalog's top 1% at the user's
    time; ``genres``: its genres among the user's three strongest.
    """
    as_of = ctx.as_of
    items = np.asarray(items, dtype=np.int64)
    hot = store.item_window_count(items, np.full(items.size, as_of[0]), WINDOWS[1])
    taste = store.genre_taste(ctx)
    top_genres = set(np.argsort(-taste[0])[:3].tolist()) if taste.shape[1] else set()
    hist = values.indices
    threshold = trending.threshold(float(as_of[0]))
    closest = _most_similar(similarity, items, hist)
    out: list[list[Reason]] = []
    for j, i in enumerate(items.tolist()):
        reasons: list[Reason] = []
        if closest[j] is not None:
            reasons.append(Reason("because_watched", item=closest[j]))
        if hot[j] > 0 and hot[j] >= threshold:
            reasons.append(Reason("trending"))
        genres = store.item_genres.indices[
            store.item_genres.indptr[i] : store.item_genres.indptr[i + 1]
        ]
        match = tuple(x for x in genres.tolist() if x in top_genres)
        if match:
            reasons.append(Reason("genres", genres=match))
        out.append(reasons)
    return out


def _most_similar(
    similarity: sp.csr_matrix, items: np.ndarray, hist: np.ndarray
) -> list[int | None]:
    """Per item, the history item most similar to it, or None when none is similar (> 0).

    Read from the item's own similarity row against the history's positions (ties: the
    first in history order, as an argmax over the history would pick), without slicing
    the matrix or densifying the answer's rows.
    """
    pos = np.full(similarity.shape[1], -1, np.int64)
    pos[hist] = np.arange(hist.size)
    ip, ix, data = similarity.indptr, similarity.indices, similarity.data
    out: list[int | None] = []
    for i in items.tolist():
        a, b = int(ip[i]), int(ip[i + 1])
        p = pos[ix[a:b]]
        ok = p >= 0
        v, p = data[a:b][ok], p[ok]
        if not v.size or not v.max() > 0:
            out.append(None)
            continue
        out.append(int(hist[p[v == v.max()].min()]))
    return out
