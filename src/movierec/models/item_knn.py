"""Item-item k-nearest-neighbours with cosine similarity (BM25 / TF-IDF weighting options)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from movierec.data.interactions import InteractionData
from movierec.models.base import ModelConfig, Recommender, TrainOptions
from movierec.models.topk import top_indices
from movierec.types import csr_from_arrays, csr_to_arrays


class ItemKNNConfig(ModelConfig):
    """Item-kNN settings.

    Attributes:
        neighbors: Neighbours kept per item.
        shrink: Similarity shrinkage ``sim · n / (n + shrink)`` with ``n`` co-occurrences.
        block: Items per block when computing similarities (bounds memory).
        recency_half_life: Default 1: recent history dominates the neighbour votes (chosen on
            the leave-last-out validation split).
    """

    neighbors: int = Field(default=200, ge=1)
    recency_half_life: float | None = Field(default=1.0, gt=0)
    shrink: float = Field(default=0.0, ge=0)
    block: int = Field(default=2048, ge=16)


def knn_similarity(
    vectors: sp.csr_matrix, neighbors: int, shrink: float = 0.0, block: int = 2048
) -> sp.csr_matrix:
    """Top-``neighbors`` cosine similarities between the rows of ``vectors`` (diagonal removed).

    Computed in row blocks so memory stays at ``block × n_rows`` floats.
    """
    v = sp.csr_matrix(vectors, dtype=np.float32)
    norms = np.sqrt(np.asarray(v.multiply(v).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    unit = sp.csr_matrix(sp.diags(1.0 / norms) @ v, dtype=np.float32)
    unit_t = unit.T.tocsr()
    binary = sp.csr_matrix((np.ones_like(v.data), v.indices, v.indptr), shape=v.shape)
    n = v.shape[0]
    kk = min(neighbors, max(n - 1, 1))
    rows, cols, vals = [], [], []
    for start in range(0, n, block):
        stop = min(n, start + block)
        sims = np.asarray((unit[start:stop] @ unit_t).todense(), dtype=np.float32)
        if shrink > 0:
            co = np.asarray((binary[start:stop] @ binary.T).todense(), dtype=np.float32)
            sims *= co / (co + shrink)
        sims[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if kk < n:
            part = top_indices(sims, kk, ignore_at_most=0.0)  # kept only when > 0
        else:
            part = np.broadcast_to(np.arange(n), sims.shape)
        top = np.take_along_axis(sims, part, axis=1)
        keep = top > 0
        rows.append(np.repeat(np.arange(start, stop), keep.sum(axis=1)))
        cols.append(part[keep])
        vals.append(top[keep])
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )


class NeighbourMatrix:
    """Mixin for models that score with a sparse item × item ``similarity`` matrix."""

    similarity: sp.csr_matrix
    n_items: int

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)  # type: ignore[call-arg]  # the Recommender after this mixin
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)

    def score_history(self, x: sp.csr_matrix) -> np.ndarray:
        """``history @ similarity``: each held item votes for its neighbours (or successors)."""
        return np.asarray((x @ self.similarity).todense(), dtype=np.float32)

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Rows of the neighbour matrix."""
        return np.asarray(self.similarity[items].todense(), dtype=np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        return csr_to_arrays(self.similarity, "sim")

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.similarity = csr_from_arrays(arrays, "sim", (self.n_items, self.n_items))


class ItemKNN(NeighbourMatrix, Recommender):
    """Scores an item by the similarity of its neighbours to the user's (weighted) history."""

    name = "itemknn"
    config: ItemKNNConfig

    def _fit(self, x: sp.csr_matrix, data: InteractionData, options: TrainOptions) -> None:
        c = self.config
        self.similarity = knn_similarity(x.T.tocsr(), c.neighbors, c.shrink, c.block)
