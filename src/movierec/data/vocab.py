"""Raw id <-> contiguous index mapping, done once for the whole system."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Ids up to this bound are encoded with a dense lookup table (O(n)); larger ones by binary search.
_DENSE_LIMIT = 1 << 26


@dataclass(frozen=True)
class Vocabulary:
    """Sorted unique raw ids; the index of an id is its position. Unknown ids map to -1.

    Attributes:
        ids: Sorted, unique int64 raw ids (read-only).
    """

    ids: np.ndarray

    def __post_init__(self) -> None:
        ids = np.ascontiguousarray(self.ids, dtype=np.int64)
        if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            raise ValueError("Vocabulary ids must be sorted and unique")
        ids.setflags(write=False)
        object.__setattr__(self, "ids", ids)

    @classmethod
    def from_ids(cls, raw: np.ndarray) -> Vocabulary:
        """Build the vocabulary of the distinct ids in ``raw``."""
        raw = np.asarray(raw)
        if raw.size and raw.min() >= 0 and raw.max() < _DENSE_LIMIT:
            present = np.zeros(int(raw.max()) + 1, dtype=bool)
            present[raw] = True
            return cls(np.flatnonzero(present).astype(np.int64))
        return cls(np.unique(raw).astype(np.int64))

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def index(self, raw: np.ndarray | list[int] | int) -> np.ndarray:
        """Return the int32 index of each raw id (``-1`` where unknown)."""
        arr = np.atleast_1d(np.asarray(raw, dtype=np.int64))
        n = len(self)
        if n == 0:
            return np.full(arr.shape, -1, dtype=np.int32)
        top = int(self.ids[-1])
        if self.ids[0] >= 0 and top < _DENSE_LIMIT and arr.size > 4 * n:
            lookup = np.full(top + 1, -1, dtype=np.int32)
            lookup[self.ids] = np.arange(n, dtype=np.int32)
            inside = (arr >= 0) & (arr <= top)
            out = np.full(arr.shape, -1, dtype=np.int32)
            out[inside] = lookup[arr[inside]]
            return out
        pos = np.searchsorted(self.ids, arr)
        pos_clip = np.minimum(pos, n - 1)
        found = self.ids[pos_clip] == arr
        return np.where(found, pos_clip, -1).astype(np.int32)

    def id_of(self, index: np.ndarray | list[int] | int) -> np.ndarray:
        """Return the raw ids of indices (raises ``IndexError`` for out-of-range indices)."""
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError("vocabulary index out of range")
        return self.ids[idx]

    def __contains__(self, raw_id: object) -> bool:
        if not isinstance(raw_id, int | np.integer):
            return False
        return bool(self.index(int(raw_id))[0] >= 0)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Arrays to store in a bundle's npz under ``<prefix>_ids``."""
        return {f"{prefix}_ids": self.ids}

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str) -> Vocabulary:
        """Load from a mapping of arrays written by :meth:`to_arrays`."""
        return cls(np.asarray(arrays[f"{prefix}_ids"]))
