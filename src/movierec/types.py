"""Shared result types."""

from __future__ import annotations

import weakref
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


def row_lengths(indptr: np.ndarray) -> np.ndarray:
    """Entries per row of a CSR ``indptr``.

    ``np.diff(indptr)`` without its per-call set-up (a few microseconds, a dozen times per
    per-request answer).
    """
    return indptr[1:] - indptr[:-1]


def index_arrays(indices: np.ndarray, indptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays of one integer type, as SciPy's kernels need: int32 when both are."""
    if indices.dtype == np.int32 and indptr.dtype == np.int32:
        return indices, indptr
    if indices.dtype == np.int64 and indptr.dtype == np.int64:
        return indices, indptr
    return np.asarray(indices, np.int64), np.asarray(indptr, np.int64)


def _unchecked(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    m = sp.csr_matrix.__new__(sp.csr_matrix)
    m._shape = (int(shape[0]), int(shape[1]))
    m.maxprint = 50
    m.data, m.indices, m.indptr = data, indices, indptr
    return m


def _unchecked_works() -> bool:
    """Whether this SciPy accepts a CSR made without its constructor (checked at import)."""
    try:
        d, i, p = np.array([1.0, 2.0, 3.0]), np.array([2, 1, 0], np.int32), np.array([0, 1, 3])
        want = sp.csr_matrix((d, i, p), shape=(2, 3))
        got = _unchecked(d, *index_arrays(i, p), (2, 3))
        probe = np.arange(3.0)
        return bool(
            got.nnz == 3
            and (got.toarray() == want.toarray()).all()
            and (got @ probe == want @ probe).all()
            and (got[1].toarray() == want[1].toarray()).all()
            and (got.T.toarray() == want.T.toarray()).all()
            and not got.has_sorted_indices
        )
    except Exception:  # any change in SciPy's internals: its own constructor then
        return False


_UNCHECKED = _unchecked_works()


def csr(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """A CSR matrix of arrays that already form one, without SciPy's checks.

    For the per-request path: SciPy's constructor checks the structure and picks an index
    type from the contents, 16–31 µs a call and about twenty calls per per-request answer.
    The arrays are used as they are (not copied); the index arrays are given one integer
    type. The caller guarantees the structure (``indptr`` of ``shape[0] + 1`` non-decreasing
    offsets, column indices below ``shape[1]``); where this SciPy's internals differ from
    what this relies on (checked once at import), SciPy's constructor is used.
    """
    indices, indptr = index_arrays(indices, indptr)
    if _UNCHECKED:
        return _unchecked(data, indices, indptr, shape)
    return sp.csr_matrix((data, indices, indptr), shape=shape)


def as_csr(m: Any, dtype: type[np.floating[Any]] | None = None) -> sp.csr_matrix:
    """``m`` as a CSR matrix (of ``dtype``, when given): ``m`` itself when it already is one."""
    if type(m) is sp.csr_matrix and (dtype is None or m.dtype == dtype):
        return m
    return sp.csr_matrix(m, dtype=dtype)


def csr_product_dense(
    x: sp.csr_matrix, m: sp.csr_matrix, dtype: type[np.floating[Any]] = np.float32
) -> np.ndarray:
    """Dense ``x @ m`` of two CSR matrices, as ``dtype``: what ``(x @ m).toarray()`` gives.

    Compiled (:mod:`movierec._kernels`): each stored ``x[q, j]`` adds ``x[q, j]·m[j]`` to row
    ``q`` in storage order and in the precision of the two (float64 if either is), which is
    SciPy's order and precision, so the two agree to the bit; a row's result never depends
    on the other rows of a batch. SciPy builds a sparse result first: several times slower
    for the few rows of a request (165 history items × 100 neighbours = 16,500 products).
    When every value of ``m`` is finite (:func:`finite_values`, checked once per array), the
    zero entries of ``x`` are skipped: their products are ±0 and change no sum. Recency
    weights make them common: with a half-life of one event, every event after the latest
    ~150 weighs 0 (half the entries of the benchmark's users with fresh feedback).
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
            finite_values(m.data),
        )
    return out if out.dtype == dtype else out.astype(dtype)


#: Whether an array's values are all finite, by ``id`` while the array lives.
_FINITE: dict[int, tuple[weakref.ref[np.ndarray], bool]] = {}


def finite_values(a: np.ndarray) -> bool:
    """Whether every value of ``a`` is finite; worked out once per array object.

    For the arrays of models' matrices, which are never changed in place once scored with:
    the answer is kept until the array is freed. An array that cannot be weakly referenced
    (a view of a scalar, say) is checked every call.
    """
    key = id(a)
    hit = _FINITE.get(key)
    if hit is not None and hit[0]() is a:
        return hit[1]
    finite = bool(np.isfinite(a).all())

    def forget(_: weakref.ref[np.ndarray]) -> None:
        _FINITE.pop(key, None)

    try:
        ref = weakref.ref(a, forget)
    except TypeError:
        return finite
    _FINITE[key] = (ref, finite)
    return finite


def time_ranks(timestamps: sp.csr_matrix, *, dense: bool) -> np.ndarray:
    """Per stored entry of CSR rows of times, its recency rank in its row (0 = the latest).

    ``dense``: ranks over distinct times (events with the same time share a rank); else the
    strict position in the row's order, ties of time by the larger column first. NaN times
    come last, as NumPy sorts them. Compiled (``_kernels.time_ranks``): one merge sort per
    row, the order ``np.lexsort`` of the rows, times and columns gives (tested against it).
    """
    indptr = np.ascontiguousarray(timestamps.indptr, np.int64)
    times = np.ascontiguousarray(timestamps.data, np.float64)
    cols = None if dense else np.ascontiguousarray(timestamps.indices, np.int64)
    out = np.empty(times.size, np.float64)
    _kernels.time_ranks(indptr, times, cols, out)
    return out
