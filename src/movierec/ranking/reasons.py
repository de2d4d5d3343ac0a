"""Why the ranker recommended an item: similarity to the history, trending, genres."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from movierec.ranking.features import WINDOWS, FeatureStore, QueryContext
from movierec.types import pair_values

#: Trending thresholds kept per query time: one per user's latest event.
TRENDING_CACHE = 4096


@dataclass(frozen=True)
class Reason:
    """Why an item was recommended: a code and its detail (item index, genre indices...)."""

    code: str
    item: int | None = None
    genres: tuple[int, ...] = ()


def trending_threshold(store: FeatureStore, cache: dict[float, float], as_of: float) -> float:
    """The 99th percentile over items of their events in the trending window at ``as_of``.

    O(items) once per distinct time, then read from ``cache`` (at most
    :data:`TRENDING_CACHE` times, oldest evicted first).
    """
    if as_of not in cache:
        n = store.n_items
        counts = store.item_window_count(np.arange(n), np.full(n, as_of), WINDOWS[1])
        if len(cache) >= TRENDING_CACHE:
            cache.pop(next(iter(cache)))
        cache[as_of] = float(np.quantile(counts, 0.99)) if n else 0.0
    return cache[as_of]


def reasons_for(
    store: FeatureStore,
    similarity: sp.csr_matrix,
    cache: dict[float, float],
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
    threshold = trending_threshold(store, cache, float(as_of[0]))
    rows = np.repeat(np.arange(items.size), hist.size)
    sims = pair_values(similarity[items], rows, np.tile(hist, items.size))
    sims = sims.reshape(items.size, hist.size)
    out: list[list[Reason]] = []
    for j, i in enumerate(items.tolist()):
        reasons: list[Reason] = []
        if sims.shape[1] and sims[j].max() > 0:
            reasons.append(Reason("because_watched", item=int(hist[int(sims[j].argmax())])))
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
