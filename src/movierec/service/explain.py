"""Why an item is in an answer: the ranker's own reasons, else similarity, trends and genres."""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.sparse as sp

from movierec.models.base import Recommender
from movierec.ranking.ranker import RankedRecommender
from movierec.ranking.reasons import Reason
from movierec.service.catalog import Item, MovieCatalog


def explain_items(
    items: list[Item],
    model: Recommender,
    catalog: MovieCatalog,
    values: sp.csr_matrix,
    timestamps: sp.csr_matrix,
    *,
    fallback: bool,
    liked_boost: bool,
) -> None:
    """Set ``reasons`` on each item of an answer given the user's current history.

    The ``ranked`` strategy gives its own reasons (from its candidate sources and features);
    other strategies are explained from item similarity, popularity and the user's genres.
    """
    if isinstance(model, RankedRecommender) and not fallback and values.nnz:
        _ranked_reasons(items, model, catalog, values, timestamps, liked_boost)
        return
    hist = values.indices
    taste: dict[str, float] = {}
    for i in hist.tolist():
        for g in catalog.genres_of(i):
            taste[g] = taste.get(g, 0.0) + 1.0
    top_genres = {g for g, _ in sorted(taste.items(), key=lambda x: -x[1])[:3]}
    index = catalog.items.index(np.array([it.movie_id for it in items], dtype=np.int64))
    known = index[index >= 0]
    sims: np.ndarray | None = None  # answer items × history, in one call of the model
    if hist.size and known.size and not fallback:
        with contextlib.suppress(NotImplementedError):  # a model without item similarity
            sims = model.item_similarity(known)[:, hist]
    row_of = {int(i): r for r, i in enumerate(known.tolist())}
    for item, i in zip(items, index.tolist(), strict=True):
        reasons: list[str] = []
        if sims is not None and i >= 0:
            row = sims[row_of[i]]
            j = int(np.argmax(row))
            if np.isfinite(row[j]) and row[j] > 0:
                reasons.append(f"Because you liked {catalog.title(int(hist[j]))}")
        if i >= 0 and i in catalog.trending:
            reasons.append("Trending now")
        match = [g for g in item.genres if g in top_genres]
        if match:
            reasons.append(f"Matches your genres: {', '.join(match)}")
        if liked_boost:
            reasons.append("Boosted by your likes")
        item.reasons = reasons or ["Popular with people like you"]


def _ranked_reasons(
    items: list[Item],
    model: RankedRecommender,
    catalog: MovieCatalog,
    values: sp.csr_matrix,
    timestamps: sp.csr_matrix,
    liked_boost: bool,
) -> None:
    idx = catalog.items.index(np.array([it.movie_id for it in items]))
    ok = idx >= 0
    why = model.explain(values, timestamps, idx[ok])
    known = [it for it, good in zip(items, ok.tolist(), strict=True) if good]
    names = model.store.genre_names if model.store is not None else ()
    for item, rs in zip(known, why, strict=True):
        item.reasons = [reason_text(r, names, catalog) for r in rs]
        if liked_boost:
            item.reasons.append("Boosted by your likes")
        item.reasons = item.reasons or ["Ranked for you from several models"]


def reason_text(reason: Reason, genre_names: tuple[str, ...], catalog: MovieCatalog) -> str:
    """A reason of the ranker as a sentence."""
    if reason.code == "because_watched" and reason.item is not None:
        return f"Because you watched {catalog.title(reason.item)}"
    if reason.code == "trending":
        return "Trending now"
    if reason.code == "genres":
        names = [genre_names[g] for g in reason.genres if g < len(genre_names)]
        return f"Matches your genres: {', '.join(names)}"
    return reason.code
