"""EASE (Steck 2019): a closed-form item-item linear model, with item pruning by count."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from movierec.data.interactions import InteractionData
from movierec.models.base import ModelConfig, Recommender, TrainOptions
from movierec.models.memory import DataShape, MemoryNeed, largest_square
from movierec.models.topk import top_indices
from movierec.types import as_csr, csr, csr_product_dense, row_lengths


class EASEConfig(ModelConfig):
    """EASE settings.

    Attributes:
        l2: Ridge penalty λ on the item-item weights.
        dropout: Denoising dropout rate p of DLAE (Steck 2020): the penalty of item i grows
            by ``p / (1 - p) · count_i``, which regularises popular items more. 0 = plain EASE.
        min_count: Items with fewer interactions are left out of the model (never
            recommended by EASE), which bounds memory at ``kept² · 4`` bytes.
        max_items: Keep at most this many items (the most frequent) whatever their count.
        recency_half_life: Default 2: a user's n-th most recent interaction weighs
            ``0.5 ** (n / 2)`` when scoring (chosen on the leave-last-out validation split).
        neighbors: Weights kept per target item (the largest in magnitude of its column of
            ``B``), stored sparse; ``None`` keeps the dense matrix. 128 was chosen on the
            validation splits of ml-latest-small: NDCG@10 1.02x the dense model's under
            leave-last-out and strong generalisation, at 6 MB instead of 149 MB.
    """

    l2: float = Field(default=400.0, gt=0)
    recency_half_life: float | None = Field(default=2.0, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    min_count: int = Field(default=2, ge=1)
    max_items: int = Field(default=30_000, ge=1)
    neighbors: int | None = Field(default=128, ge=1)


#: Columns (or rows) per block of the dense steps: temporaries of ``BLOCK × n`` entries.
BLOCK = 1024


def mirror(a: np.ndarray, from_lower: bool, block: int = BLOCK) -> None:
    """Make a square matrix symmetric in place from one triangle, block by block.

    Temporaries stay at ``block × n`` entries, not a second ``n × n`` matrix.
    """
    n = a.shape[0]
    for s in range(0, n, block):
        e = min(n, s + block)
        d = a[s:e, s:e]
        if from_lower:
            a[s:e, e:] = a[e:, s:e].T
            a[s:e, s:e] = np.tril(d) + np.tril(d, -1).T
        else:
            a[e:, s:e] = a[s:e, e:].T
            a[s:e, s:e] = np.triu(d) + np.triu(d, 1).T


def gram_matrix(x: sp.csr_matrix, block: int = BLOCK) -> np.ndarray:
    """Dense ``XᵀX`` (float32), a block of columns at a time: no ``n × n`` sparse product."""
    n = x.shape[1]
    xt = sp.csr_matrix(x.T, dtype=np.float32)
    xc = sp.csc_matrix(x, dtype=np.float32)
    out = np.empty((n, n), np.float32)
    for s in range(0, n, block):
        e = min(n, s + block)
        out[:, s:e] = (xt @ xc[:, s:e]).toarray()
    return out


#: Largest matrix inverted with threaded LAPACK; larger ones use one thread (see spd_inverse).
THREADED_LAPACK_MAX = 16_384


def spd_inverse(a: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite matrix by Cholesky (LAPACK potrf + potri).

    About five times faster than a general inverse. ``a`` (C-ordered, its upper triangle
    read) is overwritten by the inverse and returned: LAPACK works on its buffer through
    the transposed (Fortran-ordered) view, so no second ``n × n`` matrix is made.
    """
    from scipy.linalg import lapack

    potrf, potri = (
        (lapack.spotrf, lapack.spotri) if a.dtype == np.float32 else (lapack.dpotrf, lapack.dpotri)
    )
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    mirror(a, from_lower=False)  # the upper triangle is the matrix; the view reads the lower
    # OpenBLAS's threaded potrf crashes (SIGSEGV in its threaded syrk) on large matrices: seen
    # here at 30,000 items with scipy's and numpy's builds alike (OpenBLAS issues #1413, #2821)
    threads = 1 if a.shape[0] > THREADED_LAPACK_MAX else None
    with threadpool_limits(threads, "blas"):
        c, info = potrf(a.T, lower=False, overwrite_a=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"matrix is not positive definite (potrf info {info})")
        inv, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverse failed (potri info {info})")
    if not np.shares_memory(inv, a):  # pragma: no cover - LAPACK copied after all
        a[...] = inv.T
    mirror(a, from_lower=True)
    return a


def prune_columns(b: np.ndarray, n: int, block: int = BLOCK) -> sp.csr_matrix:
    """``b`` with only the ``n`` largest-magnitude entries of each column kept (sparse).

    Columns are selected a block at a time (temporaries of ``block × rows`` entries).
    """
    if n >= b.shape[0]:
        return sp.csr_matrix(b)
    rows_parts, cols_parts, vals_parts = [], [], []
    for s in range(0, b.shape[1], block):
        e = min(b.shape[1], s + block)
        rows = top_indices(np.abs(b[:, s:e]).T, n).T
        cols = np.broadcast_to(np.arange(s, e), rows.shape)
        rows_parts.append(rows.ravel())
        cols_parts.append(cols.ravel())
        vals_parts.append(b[rows, cols].ravel())
    kept = sp.coo_matrix(
        (np.concatenate(vals_parts), (np.concatenate(rows_parts), np.concatenate(cols_parts))),
        shape=b.shape,
    )
    out = kept.tocsr()
    out.eliminate_zeros()
    return out


#: Dense item × item matrices alive at the peak of :meth:`EASE._fit`: the Gram matrix,
#: inverted and turned into ``B`` in place (every other step works a block at a time).
EASE_DENSE_COPIES = 1


class EASE(Recommender):
    """``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹``; scores are ``X B``.

    ``B`` is held dense, or sparse with ``neighbors`` weights per column.
    """

    name = "ease"
    config: EASEConfig

    def __init__(self, config: EASEConfig | None = None) -> None:
        super().__init__(config)
        self.kept = np.zeros(0, np.int64)
        self.weights: np.ndarray | sp.csr_matrix = np.zeros((0, 0), np.float32)

    def memory_need(self, shape: DataShape, budget: int) -> MemoryNeed:
        """One dense kept × kept float32 matrix, inverted in place, and block temporaries."""
        c = self.config
        kept = min(c.max_items, shape.n_items)
        # sparse: 8 bytes an entry, and 4 more for the item-wide copy of its indices
        resident = kept * kept * 4 if c.neighbors is None else kept * min(c.neighbors, kept) * 12
        # a block: sparse product (12 B an entry), dense copy, |B|, top-k indices, temporaries
        blocks = kept * BLOCK * 48
        transient = EASE_DENSE_COPIES * kept * kept * 4 + blocks + 4 * shape.matrix_bytes
        fits = largest_square(
            budget - 4 * shape.matrix_bytes - blocks - resident, EASE_DENSE_COPIES
        )
        fix = (
            f'an item budget that fits: --params \'{{"ease": {{"max_items": {max(fits, 1)}}}}}\''
            if fits < kept
            else ""
        )
        return MemoryNeed(
            self.name,
            resident,
            transient,
            f"a dense {kept:,}² float32 matrix and {BLOCK}-column blocks "
            f"(max_items {c.max_items:,})",
            fix,
        )

    def _fit(self, x: sp.csr_matrix, data: InteractionData, options: TrainOptions) -> None:
        counts = np.bincount(x.indices, minlength=x.shape[1])
        order = np.argsort(-counts, kind="stable")
        kept = order[counts[order] >= self.config.min_count][: self.config.max_items]
        self.kept = np.sort(kept)
        xk = x[:, self.kept]
        gram = gram_matrix(xk)
        diag = np.diag_indices_from(gram)
        p_drop = self.config.dropout
        # DLAE (Steck 2020): emphasised denoising adds p/(1-p)·diag(XᵀX) to the ridge penalty
        gram[diag] += self.config.l2 + p_drop / (1.0 - p_drop) * gram[diag]
        b = spd_inverse(gram)  # P, in gram's buffer
        del gram
        d = np.diag(b).copy()
        np.divide(b, d, out=b)  # B = -P / diag(P), in place
        np.negative(b, out=b)
        np.fill_diagonal(b, 0.0)
        b = b.astype(np.float32, copy=False)
        n = self.config.neighbors
        self.weights = b if n is None else prune_columns(b, n)

    def score_history(self, x: sp.csr_matrix) -> np.ndarray:
        """``x B`` on the kept items; pruned items score -inf."""
        if sp.issparse(self.weights):  # the weights by item id: the row multiplies them as is
            wide, pruned = self._item_wide()
            scores = csr_product_dense(as_csr(x), wide)
            scores[:, pruned] = -np.inf
            return scores
        product = np.asarray(self._kept_columns(as_csr(x)) @ self.weights, np.float32)
        if self.kept.size == self.n_items:  # nothing pruned: no -inf to fill in
            return product
        scores = np.full((x.shape[0], self.n_items), -np.inf, dtype=np.float32)
        scores[:, self.kept] = product
        return scores

    def _item_wide(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """The sparse weights with item ids for rows and columns (made once), and pruned items.

        Row ``kept[p]`` is row ``p`` of the weights, with ``kept[c]`` for column ``c``: a
        history row multiplies it without a column map per call, into the catalog's columns
        (the sums of the kept-item product, term by term in the same order: the same scores,
        tested). Holds a second index array of the weights (4 bytes an entry).
        """
        cached = self.__dict__.get("_wide")
        if cached is None or cached[0] is not self.weights:
            w = self.weights
            assert isinstance(w, sp.csr_matrix)
            idx = np.int32 if max(w.nnz, self.n_items) < 2**31 else np.int64
            lengths = np.zeros(self.n_items, np.int64)
            lengths[self.kept] = row_lengths(w.indptr)
            indptr = np.zeros(self.n_items + 1, idx)
            np.cumsum(lengths, out=indptr[1:])
            columns = self.kept.astype(idx)[w.indices]
            wide = csr(w.data, columns, indptr, (self.n_items, self.n_items))
            pruned = np.setdiff1d(np.arange(self.n_items), self.kept)
            cached = self.__dict__["_wide"] = (w, wide, pruned)
        return cached[1], cached[2]

    def _kept_columns(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """``x[:, kept]`` by a column map made once (SciPy's column slicing sorts per call)."""
        if self.kept.size == self.n_items:
            return x
        cached = self.__dict__.get("_kept_map")
        if cached is None or cached[0] is not self.kept:
            col = np.full(self.n_items, -1, np.int64)
            col[self.kept] = np.arange(self.kept.size)
            cached = (self.kept, col)
            self.__dict__["_kept_map"] = cached
        new = cached[1][x.indices]
        ok = new >= 0
        indptr = np.concatenate(([0], np.cumsum(ok)))[x.indptr]
        return csr(x.data[ok], new[ok], indptr, (x.shape[0], self.kept.size))

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Rows of the learned item-item weights (symmetrised)."""
        items = np.asarray(items, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.kept, items), max(self.kept.size - 1, 0))
        ok = np.flatnonzero(self.kept[pos] == items) if self.kept.size else np.zeros(0, int)
        out = np.full((len(items), self.n_items), -np.inf, dtype=np.float32)
        w, p = self.weights, pos[ok]
        if isinstance(w, np.ndarray):
            rows = w[p] + w[:, p].T
        else:  # a column of the CSR weights is a row of their transpose (made once)
            rows = w[p].toarray() + self._weights_t()[p].toarray()
        out[np.ix_(ok, self.kept)] = rows
        return out

    def _weights_t(self) -> sp.csr_matrix:
        """The pruned weights transposed, as CSR (their columns as rows), made once per fit."""
        cached = self.__dict__.get("_wt")
        if cached is None or cached[0] is not self.weights:
            cached = (self.weights, sp.csr_matrix(self.weights.T))
            self.__dict__["_wt"] = cached
        return cached[1]

    def _arrays(self) -> dict[str, np.ndarray]:
        if isinstance(self.weights, np.ndarray):
            return {"kept": self.kept, "weights": self.weights}
        w = self.weights
        return {
            "kept": self.kept,
            "weights_data": w.data,
            "weights_indices": w.indices,
            "weights_indptr": w.indptr,
        }

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.kept = arrays["kept"]
        if "weights" in arrays:
            self.weights = arrays["weights"]
            return
        n = self.kept.size
        parts = (arrays["weights_data"], arrays["weights_indices"], arrays["weights_indptr"])
        self.weights = sp.csr_matrix(parts, shape=(n, n))
