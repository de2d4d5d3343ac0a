"""Maximal marginal relevance over genres: a diversity re-rank with a tunable weight."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def mmr(items: np.ndarray, scores: np.ndarray, genres: sp.csr_matrix, weight: float) -> np.ndarray:
    """Greedy MMR order of ``items`` (one query), best first.

    Each step picks ``argmax (1 - weight) · relevance - weight · max_sim_to_chosen`` where
    relevance is the score min-max scaled to [0, 1] and similarity is the cosine of genre
    vectors. ``weight = 0`` keeps the score order.

    Returns:
        A permutation of ``items``.
    """
    n = items.size
    if n <= 1 or weight <= 0:
        return items[np.argsort(-scores, kind="stable")]
    lo, hi = float(scores.min()), float(scores.max())
    rel = (scores - lo) / (hi - lo) if hi > lo else np.ones(n)
    g = np.asarray(genres[items].todense(), dtype=np.float64)
    norms = np.linalg.norm(g, axis=1)
    norms[norms == 0] = 1.0
    unit = g / norms[:, None]
    sim = unit @ unit.T
    chosen: list[int] = []
    max_sim = np.zeros(n)
    left = np.ones(n, bool)
    for _ in range(n):
        value = (1 - weight) * rel - weight * max_sim
        value[~left] = -np.inf
        j = int(np.argmax(value))
        chosen.append(j)
        left[j] = False
        max_sim = np.maximum(max_sim, sim[j])
    return items[np.asarray(chosen)]
