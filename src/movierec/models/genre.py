"""Content neighbours: items are close when their genres and tags are (TF-IDF, cosine)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from movierec.data.interactions import InteractionData
from movierec.models.base import ModelConfig, Recommender, TrainOptions
from movierec.types import csr_product_dense


class GenreConfig(ModelConfig):
    """Content-model settings.

    Attributes:
        tag_weight: Weight of the tag block relative to the genre block.
        popularity_weight: Small popularity prior that breaks ties between equal-genre items.
    """

    tag_weight: float = Field(default=0.5, ge=0)
    popularity_weight: float = Field(default=0.05, ge=0)


def _tfidf_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    m = sp.csr_matrix(m, dtype=np.float32)
    m.data = np.log1p(m.data)
    df = np.bincount(m.indices, minlength=m.shape[1]).astype(np.float64)
    idf = np.log((1.0 + m.shape[0]) / (1.0 + df)) + 1.0
    out = sp.csr_matrix(m @ sp.diags(idf.astype(np.float32)))
    norms = np.sqrt(np.asarray(out.multiply(out).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ out, dtype=np.float32)


class GenreKNN(Recommender):
    """Scores ``(X V) Vᵀ``: the user's history projected on content vectors ``V``."""

    name = "genre"
    config: GenreConfig

    def __init__(self, config: GenreConfig | None = None) -> None:
        super().__init__(config)
        self.content = sp.csr_matrix((0, 0), dtype=np.float32)
        self.popularity = np.zeros(0, np.float32)

    def _fit(self, x: sp.csr_matrix, data: InteractionData, options: TrainOptions) -> None:
        if data.catalog is None:
            raise ValueError("the genre model needs side data: InteractionData.with_catalog")
        blocks = [_tfidf_rows(data.catalog.genres)]
        if data.catalog.tags.shape[1] and self.config.tag_weight > 0:
            blocks.append(_tfidf_rows(data.catalog.tags) * self.config.tag_weight)
        v = sp.hstack(blocks).tocsr()
        norms = np.sqrt(np.asarray(v.multiply(v).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        self.content = sp.csr_matrix(sp.diags(1.0 / norms) @ v, dtype=np.float32)
        pop = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float32)
        self.popularity = pop / max(float(pop.max()), 1.0)

    def score_history(self, x: sp.csr_matrix) -> np.ndarray:
        """Content similarity to the history, plus a small popularity prior."""
        profile = csr_product_dense(x, self.content)
        norms = np.linalg.norm(profile, axis=1)
        norms[norms == 0] = 1.0
        scores = np.asarray((self.content @ (profile / norms[:, None]).T).T, dtype=np.float32)
        return scores + self.config.popularity_weight * self.popularity

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Cosine of content vectors."""
        return np.asarray((self.content[items] @ self.content.T).todense(), dtype=np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        c = self.content
        return {
            "content_data": c.data,
            "content_indices": c.indices,
            "content_indptr": c.indptr,
            "content_cols": np.array([c.shape[1]]),
            "popularity": self.popularity,
        }

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.content = sp.csr_matrix(
            (arrays["content_data"], arrays["content_indices"], arrays["content_indptr"]),
            shape=(self.n_items, int(arrays["content_cols"][0])),
        )
        self.popularity = arrays["popularity"]
