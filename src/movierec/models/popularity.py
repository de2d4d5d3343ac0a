"""Popularity: count, rating-weighted or trending, with an optional per-user genre boost."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from movierec.data.interactions import InteractionData
from movierec.models.base import ModelConfig, Recommender, TrainOptions


class PopularityConfig(ModelConfig):
    """Popularity settings.

    Attributes:
        mode: ``count`` (number of interactions), ``rating`` (sum of values: rating-weighted),
            ``trending`` (each interaction decays with ``half_life_days`` from the newest), or
            ``mean`` (the damped mean rating ``(sum + damping · global mean) / (n + damping)``).
        half_life_days: Half-life of ``trending``.
        min_count: Items with fewer interactions rank after every other item (in count
            order): the reference system's "popular movies with at least 20 ratings".
        damping: Pseudo-ratings at the global mean that ``mean`` adds to every item.
        genre_boost: Weight of the user's genre affinity added to normalised popularity
            (needs the data's catalog; 0 = the same list for everybody).
    """

    weighting: Literal["raw"] = "raw"
    mode: Literal["count", "rating", "trending", "mean"] = "count"
    half_life_days: float = Field(default=30.0, gt=0)
    min_count: int = Field(default=0, ge=0)
    damping: float = Field(default=10.0, ge=0)
    genre_boost: float = Field(default=0.0, ge=0)


class Popularity(Recommender):
    """The baseline and the last fallback of every chain."""

    needs_history = False

    name = "popularity"
    config: PopularityConfig

    def __init__(self, config: PopularityConfig | None = None) -> None:
        super().__init__(config)
        self.popularity = np.zeros(0, np.float32)
        self.genres: sp.csr_matrix | None = None

    def _fit(self, x: sp.csr_matrix, data: InteractionData, options: TrainOptions) -> None:
        m, c = data.matrix, self.config
        counts = np.bincount(m.indices, minlength=m.shape[1]).astype(np.float64)
        pop: np.ndarray
        if c.mode == "count":
            pop = counts
        elif c.mode == "rating":
            pop = np.bincount(m.indices, weights=m.data.astype(np.float64), minlength=m.shape[1])
        elif c.mode == "mean":
            sums = np.bincount(m.indices, weights=m.data.astype(np.float64), minlength=m.shape[1])
            mu = float(m.data.mean()) if m.nnz else 0.0
            pop = (sums + c.damping * mu) / np.maximum(counts + c.damping, 1e-12)
        else:
            age = (data.timestamps.max() - data.timestamps) / 86_400.0 if m.nnz else np.zeros(0)
            w = np.power(0.5, age / c.half_life_days)
            pop = np.bincount(m.indices, weights=w, minlength=m.shape[1])
        top = pop.max() if pop.size and pop.max() > 0 else 1.0
        pop = pop / top
        if c.min_count > 0:  # rare items after every other one, among themselves by count
            rare = counts < c.min_count
            pop = np.where(rare, counts / max(float(counts.max()), 1.0) - 2.0, pop)
        self.popularity = pop.astype(np.float32)
        self.genres = None
        if self.config.genre_boost > 0 and data.catalog is not None:
            g = sp.csr_matrix(data.catalog.genres, dtype=np.float32)
            norms = np.sqrt(np.asarray(g.multiply(g).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            self.genres = sp.csr_matrix(sp.diags(1.0 / norms) @ g, dtype=np.float32)

    def score_history(self, x: sp.csr_matrix) -> np.ndarray:
        """Popularity for everybody, plus the genre boost from the user's history."""
        scores = np.tile(self.popularity, (x.shape[0], 1))
        if self.genres is not None and self.config.genre_boost > 0:
            affinity = np.asarray((x @ self.genres).todense())
            norms = np.linalg.norm(affinity, axis=1)
            norms[norms == 0] = 1.0
            affinity /= norms[:, None]
            scores += self.config.genre_boost * np.asarray(affinity @ self.genres.T.toarray())
        return scores.astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        """Genre vectors when known, else popularity as a single feature."""
        if self.genres is not None:
            return self.genres.toarray()
        return self.popularity[:, None]

    def _arrays(self) -> dict[str, np.ndarray]:
        out = {"popularity": self.popularity}
        if self.genres is not None:
            g = self.genres
            out |= {
                "genres_data": g.data,
                "genres_indices": g.indices,
                "genres_indptr": g.indptr,
                "genres_shape": np.array(g.shape),
            }
        return out

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.popularity = arrays["popularity"]
        if "genres_data" in arrays:
            self.genres = sp.csr_matrix(
                (arrays["genres_data"], arrays["genres_indices"], arrays["genres_indptr"]),
                shape=tuple(arrays["genres_shape"]),
            )
