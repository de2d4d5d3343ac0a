"""Item-item k-nearest-neighbours with cosine similarity (BM25 / TF-IDF weighting options)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from movierec.data.interactions import InteractionData
from movierec.models.base import ModelConfig, Recommender, TrainOptions
from movierec.models.memory import DataShape, MemoryNeed
from movierec.models.topk import top_indices
from movierec.types import csr_from_arrays, csr_product_dense, csr_to_arrays


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


#: Dense similarities per block of :func:`knn_similarity` (per thread).
KNN_BLOCK_BYTES = 256 * 1024 * 1024


def block_rows(n: int, block: int, block_bytes: int) -> int:
    """Rows per block of :func:`knn_similarity`: at most ``block``, ``block_bytes`` of floats."""
    return max(1, min(block, block_bytes // max(1, 4 * n)))


def knn_similarity(
    vectors: sp.csr_matrix,
    neighbors: int,
    shrink: float = 0.0,
    block: int = 2048,
    threads: int = 1,
    block_bytes: int | None = None,
) -> sp.csr_matrix:
    """Top-``neighbors`` cosine similarities between the rows of ``vectors`` (diagonal removed).

    Computed in row blocks of at most ``block`` rows and about ``block_bytes`` of dense
    similarities each, on ``threads`` threads (0 = every core; SciPy's sparse product and
    NumPy's partition release the GIL). Blocks are independent and joined in order, so the
    result does not depend on the thread count.
    """
    v = sp.csr_matrix(vectors, dtype=np.float32)
    norms = np.sqrt(np.asarray(v.multiply(v).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    unit = sp.csr_matrix(sp.diags(1.0 / norms) @ v, dtype=np.float32)
    unit_t = unit.T.tocsr()
    binary = sp.csr_matrix((np.ones_like(v.data), v.indices, v.indptr), shape=v.shape)
    binary_t = binary.T.tocsr() if shrink > 0 else None
    n = v.shape[0]
    kk = min(neighbors, max(n - 1, 1))
    step = block_rows(n, block, block_bytes or KNN_BLOCK_BYTES)

    def one(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        stop = min(n, start + step)
        sims = (unit[start:stop] @ unit_t).toarray().astype(np.float32, copy=False)
        if binary_t is not None:
            co = (binary[start:stop] @ binary_t).toarray().astype(np.float32, copy=False)
            sims *= co / (co + shrink)
        sims[np.arange(stop - start), np.arange(start, stop)] = 0.0
        part = top_indices(sims, kk)  # kept only when > 0
        top = np.take_along_axis(sims, part, axis=1)
        keep = top > 0
        return np.repeat(np.arange(start, stop), keep.sum(axis=1)), part[keep], top[keep]

    workers = threads if threads > 0 else (os.cpu_count() or 1)
    starts = range(0, n, step)
    if workers == 1 or len(starts) == 1:
        parts = [one(s) for s in starts]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="movierec-knn") as pool:
            parts = list(pool.map(one, starts))
    rows, cols, vals = zip(*parts, strict=True) if parts else ((), (), ())
    return sp.csr_matrix(
        (
            np.concatenate([*vals, np.zeros(0, np.float32)]),
            (
                np.concatenate([*rows, np.zeros(0, np.int64)]),
                np.concatenate([*cols, np.zeros(0, np.int64)]),
            ),
        ),
        shape=(n, n),
    )


def knn_need(name: str, shape: DataShape, neighbors: int, params_key: str) -> MemoryNeed:
    """Memory of :func:`knn_similarity` over the items of ``shape`` on every core."""
    n = shape.n_items
    kk = min(neighbors, max(n - 1, 1))
    workers = os.cpu_count() or 1
    step = block_rows(n, 2048, KNN_BLOCK_BYTES)
    # per thread: the block's sparse product (<= step·n entries, 12 bytes each), its dense
    # copy, the selected indices; the vectors three times; the result twice while assembled
    per_thread = step * n * (12 + 4) + step * kk * 8
    resident = n * kk * 8
    transient = workers * per_thread + 3 * shape.matrix_bytes + 2 * n * kk * 16
    return MemoryNeed(
        name,
        resident,
        transient,
        f"{kk} neighbours of {n:,} items, {workers} blocks of {step} items at once",
        f'fewer neighbours: --params \'{{"{params_key}": {{"neighbors": 50}}}}\'',
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
        return csr_product_dense(x, self.similarity)

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

    def memory_need(self, shape: DataShape, budget: int) -> MemoryNeed:
        """Neighbour lists kept; per thread one block of dense similarities while fitting."""
        return knn_need(self.name, shape, self.config.neighbors, "itemknn")

    def _fit(self, x: sp.csr_matrix, data: InteractionData, options: TrainOptions) -> None:
        c = self.config
        self.similarity = knn_similarity(
            x.T.tocsr(), c.neighbors, c.shrink, c.block, threads=options.threads
        )
