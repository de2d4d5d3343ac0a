"""Shared result types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

import movierec._kernels as _kernels


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


def csr_to_arrays(m: sp.csr_matrix, prefix: str) -> dict[str, np.ndarray]:
    """The three arrays of a CSR matrix under ``<prefix>_data|indices|indptr`` (for npz)."""
    return {f"{prefix}_data": m.data, f"{prefix}_indices": m.indices, f"{prefix}_indptr": m.indptr}


def csr_from_arrays(arrays: Any, prefix: str, shape: tuple[int, ...]) -> sp.csr_matrix:
    """Inverse of :func:`csr_to_arrays`."""
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]),
        shape=shape,
    )


#: Largest sparse block :func:`pair_values` reads as a dense array (serving-size queries).
DENSE_SIMS = 1 << 21


def csr_product_dense(
    x: sp.csr_matrix, m: sp.csr_matrix, dtype: type[np.floating[Any]] = np.float32
) -> np.ndarray:
    """Dense ``x @ m`` of two CSR matrices, as ``dtype``: what ``(x @ m).toarray()`` gives.

    Compiled (:mod:`movierec._kernels`): each stored ``x[q, j]`` adds ``x[q, j]·m[j]`` to row
    ``q`` in storage order and in the precision of the two (float64 if either is), which is
    SciPy's order and precision, so the two agree to the bit; a row's result never depends
    on the other rows of a batch. SciPy builds a sparse result first: several times slower
    for the few rows of a request (165 history items × 100 neighbours = 16,500 products).
    """
    n_q, n_out = x.shape[0], m.shape[1]
    if x.shape[1] != m.shape[0]:
        raise ValueError(f"shapes {x.shape} and {m.shape} do not multiply")
    dbl = np.result_type(x.dtype, m.dtype) == np.float64
    value = np.float64 if dbl else np.float32
    out = np.zeros((n_q, n_out), value)
    if x.nnz and m.nnz:
        wide = (
            max(m.indptr.dtype.itemsize, m.indices.dtype.itemsize) > 4 or max(x.nnz, m.nnz) >= 2**31
        )
        idx = np.int64 if wide else np.int32
        _kernels.csr_product(
            n_q,
            n_out,
            np.ascontiguousarray(x.indptr, idx),
            np.ascontiguousarray(x.indices, idx),
            np.ascontiguousarray(x.data, value),
            np.ascontiguousarray(m.indptr, idx),
            np.ascontiguousarray(m.indices, idx),
            np.ascontiguousarray(m.data, value),
            out,
            wide,
            dbl,
        )
    return out if out.dtype == dtype else out.astype(dtype)


def pair_values(m: sp.spmatrix, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Values of a sparse matrix at (rows, items) pairs (0 where absent); a small one densely."""
    if m.shape[0] * m.shape[1] <= DENSE_SIMS:  # a few queries (serving)
        return np.asarray(m.toarray()[rows, items], dtype=np.float64)
    return np.asarray(sp.csr_matrix(m)[rows, items], dtype=np.float64).ravel()
