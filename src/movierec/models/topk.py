"""The one top-k of movierec: seen-masking, candidate restriction and partial sorting."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from movierec.types import RecBatch


def mask_rows(scores: np.ndarray, exclude: sp.csr_matrix) -> None:
    """Set ``scores[r, c] = -inf`` for every stored entry ``(r, c)`` of ``exclude`` (in place)."""
    if exclude.nnz == 0:
        return
    rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
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
        scores: float scores, shape (n, n_items); modified in place (masked entries -> -inf).
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
    scores[~np.isfinite(scores)] = -np.inf
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
    part = top_indices(scores, kk)
    part_scores = np.take_along_axis(scores, part, axis=1)
    # best first; ties broken by the smaller item index for determinism
    order = np.lexsort((part, -part_scores), axis=1)
    items = np.take_along_axis(part, order, axis=1).astype(np.int32)
    top = np.take_along_axis(part_scores, order, axis=1)
    if kk < k:
        items = np.pad(items, ((0, 0), (0, k - kk)), constant_values=-1)
        top = np.pad(top, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    invalid = ~np.isfinite(top)
    items[invalid] = -1
    return RecBatch(items, top.astype(np.float32))


def top_indices(values: np.ndarray, kk: int, ignore_at_most: float = -np.inf) -> np.ndarray:
    """Column indices of the ``kk`` largest values of each row, in no particular order.

    Among values tied with the ``kk``-th largest, the smallest indices are taken, so the
    selection does not depend on how ``argpartition`` picks among ties (NumPy's SIMD
    partitions differ by CPU). Rows whose ``kk``-th value is at most ``ignore_at_most`` are
    left as partitioned (for callers that drop such values anyway).

    Wide rows are first cut at a threshold read off a strided sample, so that a selection
    runs over a few hundred values instead of the whole row. The cut is exact: when at least
    ``kk`` values lie above it, the ``kk`` largest and all their ties are among them; when
    fewer lie above it but enough are tied with it, the cut is the ``kk``-th value itself and
    the row's top ``kk`` are those above plus the first of the tied; a row where neither holds
    (or too many values lie above the cut) is selected over its whole width.
    """
    m = values.shape[1]
    if kk >= m:
        return np.broadcast_to(np.arange(m), values.shape).copy()
    stride = m // (PREFILTER_SAMPLE * kk)
    if stride < 2:
        return _select(values, kk, ignore_at_most)
    sample = values[:, ::stride]
    q = min(sample.shape[1], -(-PREFILTER_MARGIN * kk // stride) + 2)
    cut = np.partition(sample, sample.shape[1] - q, axis=1)[:, sample.shape[1] - q, None]
    above = values > cut
    n_gt = above.sum(axis=1)
    n_ge = n_gt + (values == cut).sum(axis=1)
    part = np.empty((values.shape[0], kk), np.int64)
    whole = (n_ge < kk) | (n_gt > m // 4)
    if whole.any():
        part[whole] = _select(values[whole], kk, ignore_at_most)
    for r in np.flatnonzero(~whole).tolist():
        cols = np.flatnonzero(above[r])  # ascending: ties still go to the smaller index
        if cols.size >= kk:
            part[r] = cols[_select(values[r, cols][None, :], kk, ignore_at_most)[0]]
        else:
            tied = np.flatnonzero(values[r] == cut[r])[: kk - cols.size]
            part[r] = np.concatenate([cols, tied])
    return part


#: Sample one value in every ``m / (PREFILTER_SAMPLE · kk)`` of a row (about 4·kk values).
PREFILTER_SAMPLE = 4
#: The sample's threshold is set for about this many times ``kk`` values to pass it.
PREFILTER_MARGIN = 3


def _select(values: np.ndarray, kk: int, ignore_at_most: float) -> np.ndarray:
    """:func:`top_indices` over whole rows (``kk`` < number of columns)."""
    part = np.argpartition(-values, kk - 1, axis=1)[:, :kk]
    thr = np.take_along_axis(values, part, axis=1).min(axis=1)
    n_ge = (values >= thr[:, None]).sum(axis=1)
    for r in np.flatnonzero(np.isfinite(thr) & (thr > ignore_at_most) & (n_ge > kk)):
        row = values[r]
        above = np.flatnonzero(row > thr[r])
        tied = np.flatnonzero(row == thr[r])[: kk - above.size]
        part[r] = np.concatenate([above, tied])
    return part
