"""The one top-k of movierec: seen-masking, candidate restriction and partial sorting."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

import movierec._kernels as _kernels
from movierec.spare import spare
from movierec.types import RecBatch, row_lengths


def mask_rows(scores: np.ndarray, exclude: sp.csr_matrix) -> None:
    """Set ``scores[r, c] = -inf`` for every stored entry ``(r, c)`` of ``exclude`` (in place)."""
    if exclude.nnz == 0:
        return
    rows = np.repeat(np.arange(exclude.shape[0]), row_lengths(exclude.indptr))
    scores[rows, exclude.indices] = -np.inf


def topk(
    scores: np.ndarray,
    k: int,
    *,
    exclude: sp.csr_matrix | None = None,
    candidates: np.ndarray | None = None,
) -> RecBatch:
    """Return the k best items of each row of ``scores``, best first.

    Args:
        scores: float scores, shape (n, n_items); modified in place (masked entries ->
            -inf). NaN and infinite scores count as -inf: never returned.
        k: How many items per row.
        exclude: CSR (n × n_items) whose stored entries are never returned (seen items).
        candidates: Item indices that may be returned (1-D, shared by every row), or a
            boolean mask of shape (n, n_items); ``None`` allows every item.

    Returns:
        A :class:`RecBatch`; rows with fewer than k allowed items are padded with -1.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2:
        raise ValueError("scores must be 2-D (n, n_items)")
    m = scores.shape[1]
    if candidates is not None:
        if candidates.dtype == bool:
            scores[~candidates] = -np.inf
        else:
            allowed = np.zeros(m, dtype=bool)
            allowed[candidates[(candidates >= 0) & (candidates < m)]] = True
            scores[:, ~allowed] = -np.inf
    if exclude is not None:
        mask_rows(scores, exclude)
    kk = min(k, m)
    part = top_indices(scores, kk)  # best first; ties broken by the smaller item index
    items = part.astype(np.int32)
    top = np.take_along_axis(scores, part, axis=1)
    if kk < k:
        items = np.pad(items, ((0, 0), (0, k - kk)), constant_values=-1)
        top = np.pad(top, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    invalid = ~np.isfinite(top)
    items[invalid] = -1
    top[invalid] = -np.inf
    return RecBatch(items, top.astype(np.float32))


def top_indices(values: np.ndarray, kk: int) -> np.ndarray:
    """Column indices of the ``kk`` largest values of each row, best first.

    Ties go to the smaller column, so the selection never depends on how a partition picks
    among equal values (NumPy's SIMD partitions differ by CPU); NaN and ``+inf`` count as
    ``-inf``. Compiled (:mod:`movierec._kernels`): for ``kk >= 32`` the row is cut into at
    least ``2·kk`` blocks and only the values at least the ``kk``-th largest block maximum
    are kept (a bound on the ``kk``-th best value); for a smaller ``kk``, one pass behind a
    rising threshold (values that beat it go to a ``4·kk`` buffer, cut back to its best
    ``kk`` when full). Then one selection and one sort of the ``kk`` kept.
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    n, m = values.shape
    kk = min(kk, m)
    out = np.empty((n, kk), np.int64)
    if n and kk > 0:  # rows split with the spare core when a lone request has it
        _kernels.topk_rows(values, n, m, kk, out, spare())
    return out
