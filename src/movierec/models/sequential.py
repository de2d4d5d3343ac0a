"""``sequential``: what people watch next. Directed item-to-item transitions in time order.

For every user the interactions are ordered by time; each item ``i`` votes for the items
that followed it within ``window`` steps, with weight ``1 / step``. Rows are normalised
(``T[i, j]`` ≈ the share of ``i``'s successors that were ``j``), damped by ``shrink`` for
rare items, and a user is scored by their recency-weighted history times ``T``: mostly
"what usually comes after the movie you just watched".
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from movierec.data.interactions import InteractionData
from movierec.models.base import ModelConfig, Recommender, TrainOptions
from movierec.models.item_knn import NeighbourMatrix
from movierec.models.memory import DataShape, MemoryNeed


class SequentialConfig(ModelConfig):
    """Transition model settings.

    Attributes:
        window: How many following interactions each item votes for (10, chosen on the
            leave-last-out validation split from 1, 3, 5, 10 and 20).
        shrink: Row normalisation ``count / (row_total + shrink)``.
        recency_half_life: Default 1: the latest items dominate.
    """

    window: int = Field(default=10, ge=1)
    shrink: float = Field(default=5.0, ge=0)
    recency_half_life: float | None = Field(default=1.0, gt=0)


def transitions(data: InteractionData, window: int, seed: int = 0) -> sp.csr_matrix:
    """Counts (items × items) of ``j`` following ``i`` within ``window`` steps, weight 1/step.

    Interactions with the same timestamp are ordered by a seeded shuffle.
    """
    coo = data.matrix.tocoo()
    u, i = coo.row, coo.col.astype(np.int32)
    tie = np.random.default_rng(seed).random(u.size)
    order = np.lexsort((tie, data.timestamps, u))
    su, si = u[order], i[order]
    del coo, u, i, tie, order
    n = data.n_items
    t = sp.csr_matrix((n, n), dtype=np.float32)
    # one step at a time, summed as it goes: the pairs of all steps at once (nnz × window,
    # int64 coordinates) were ~10 GB at 20M interactions
    for step in range(1, window + 1):
        same = su[step:] == su[:-step]
        part = sp.csr_matrix(
            (
                np.full(int(same.sum()), 1.0 / step, np.float32),
                (si[:-step][same], si[step:][same]),
            ),
            shape=(n, n),
        )
        part.sum_duplicates()
        t = t + part
        del part, same
    t.setdiag(0)
    t.eliminate_zeros()
    return t


class Sequential(NeighbourMatrix, Recommender):
    """Scores items by how often they follow the user's latest items."""

    name = "sequential"
    config: SequentialConfig

    def memory_need(self, shape: DataShape, budget: int) -> MemoryNeed:
        """Distinct pairs within ``window`` steps (8 bytes each), summed one step at a time."""
        w = self.config.window
        pairs = shape.nnz * w
        kept = min(pairs, shape.n_items * shape.n_items) * 8
        return MemoryNeed(
            self.name,
            kept,
            shape.nnz * 40 + 2 * kept,
            f"{pairs:,} item pairs within {w} steps",
            f'a shorter window: --params \'{{"sequential": {{"window": {max(1, w // 2)}}}}}\''
            if w > 1
            else "",
        )

    def _fit(self, x: sp.csr_matrix, data: InteractionData, options: TrainOptions) -> None:
        t = transitions(data, self.config.window, options.seed)
        totals = np.asarray(t.sum(axis=1)).ravel()
        denom = totals + self.config.shrink
        scale = np.divide(1.0, denom, out=np.zeros_like(denom), where=totals > 0)
        self.similarity = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ t, dtype=np.float32)
