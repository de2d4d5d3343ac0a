"""Shared result types."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RecBatch:
    """Top-k results of a batch: one row per query.

    Attributes:
        items: int32 item indices, shape (n, k); ``-1`` pads rows with fewer than k items.
        scores: float32 scores, shape (n, k); ``-inf`` where ``items`` is ``-1``.
    """

    items: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The valid items and scores of row ``i`` (padding removed)."""
        valid = self.items[i] >= 0
        return self.items[i][valid], self.scores[i][valid]
