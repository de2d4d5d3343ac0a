"""movierec.types.csr: a CSR matrix without SciPy's checks behaves like SciPy's own."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import movierec.types as mt


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 9),
    density=st.floats(0, 1),
    wide=st.sampled_from([(np.int32, np.int32), (np.int64, np.int64), (np.int32, np.int64)]),
    seed=st.integers(0, 1000),
    unchecked=st.booleans(),
)
def test_csr_equals_scipys_construction(
    rows: int,
    cols: int,
    density: float,
    wide: tuple[type, type],
    seed: int,
    unchecked: bool,
) -> None:
    """Same values under the operations the scoring path uses; index arrays of one type."""
    with pytest.MonkeyPatch.context() as mp:  # both ways: unchecked and SciPy's constructor
        mp.setattr(mt, "_UNCHECKED", unchecked and mt._UNCHECKED)
        _check_csr(rows, cols, density, wide, seed)


def _check_csr(rows: int, cols: int, density: float, wide: tuple[type, type], seed: int) -> None:
    ref = sp.random(rows, cols, density=density, random_state=seed, format="csr")
    rng = np.random.default_rng(seed)
    for r in range(rows):  # unsorted columns inside rows, as history rows may have
        lo, hi = ref.indptr[r], ref.indptr[r + 1]
        perm = lo + rng.permutation(hi - lo)
        ref.indices[lo:hi], ref.data[lo:hi] = ref.indices[perm], ref.data[perm]
    got = mt.csr(ref.data, ref.indices.astype(wide[0]), ref.indptr.astype(wide[1]), ref.shape)
    assert type(got) is sp.csr_matrix and got.shape == ref.shape and got.nnz == ref.nnz
    assert got.indices.dtype == got.indptr.dtype
    dense = ref.toarray()
    np.testing.assert_array_equal(got.toarray(), dense)
    probe = rng.normal(size=(cols, 3))
    np.testing.assert_allclose(got @ probe, dense @ probe)
    np.testing.assert_array_equal(got[rows - 1].toarray(), dense[rows - 1 : rows])
    np.testing.assert_array_equal(got.T.toarray(), dense.T)
    got.sort_indices()
    assert got.has_sorted_indices
    np.testing.assert_array_equal(got.toarray(), dense)


def test_the_unchecked_construction_works_on_this_scipy() -> None:
    """The import-time check found SciPy's internals as csr relies on them (else: slower)."""
    assert mt._UNCHECKED, "movierec.types.csr falls back to SciPy's constructor here"


def test_as_csr_returns_a_matrix_of_the_type_as_it_is() -> None:
    m = sp.csr_matrix(np.eye(3, dtype=np.float32))
    assert mt.as_csr(m, np.float32) is m and mt.as_csr(m) is m
    assert mt.as_csr(m, np.float64).dtype == np.float64
    assert type(mt.as_csr(sp.csr_array(m))) is sp.csr_matrix
    np.testing.assert_array_equal(mt.as_csr(np.eye(2)).toarray(), np.eye(2))


def _lexsort_dense_ranks(ts: sp.csr_matrix) -> np.ndarray:
    """The NumPy code ``time_ranks(dense=True)`` replaced (``recency_weights``' ranks)."""
    counts = np.diff(ts.indptr)
    rows = np.repeat(np.arange(ts.shape[0]), counts)
    t = ts.data.astype(np.float64)
    order = np.lexsort((-t, rows))
    t_sorted, rows_sorted = t[order], rows[order]
    new = np.ones(order.shape[0], dtype=bool)
    new[1:] = (t_sorted[1:] != t_sorted[:-1]) | (rows_sorted[1:] != rows_sorted[:-1])
    dense = np.cumsum(new)
    first = np.repeat(ts.indptr[:-1], counts)
    rank = np.empty(order.shape[0], dtype=np.float64)
    rank[order] = dense - dense[first] if dense.size else dense
    return rank


def _lexsort_strict_ranks(ts: sp.csr_matrix) -> np.ndarray:
    """The NumPy code ``time_ranks(dense=False)`` replaced (the ranker's ``recency_rank``)."""
    rows = np.repeat(np.arange(ts.shape[0]), np.diff(ts.indptr))
    order = np.lexsort((-ts.indices, -ts.data, rows))
    pos = np.empty(order.size, dtype=np.int64)
    pos[order] = np.arange(order.size)
    return (pos - ts.indptr[:-1][rows]).astype(np.float64)


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=0, max_size=6),
    distinct=st.integers(1, 12),
    nan_share=st.sampled_from([0.0, 0.0, 0.2]),
    index=st.sampled_from([np.int32, np.int64]),
    seed=st.integers(0, 10_000),
)
def test_time_ranks_equal_the_lexsort_ranks(
    lengths: list[int], distinct: int, nan_share: float, index: type, seed: int
) -> None:
    """Dense and strict ranks as the lexsort code gave them: ties, NaN, empty rows, any order."""
    rng = np.random.default_rng(seed)
    n_cols = 50
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(index)
    cols = np.concatenate(
        [rng.choice(n_cols, n, replace=False) for n in lengths] or [np.zeros(0, int)]
    ).astype(index)
    times = rng.integers(0, distinct, int(indptr[-1])).astype(np.float64) * 1e9
    times[rng.random(times.size) < nan_share] = np.nan
    ts = sp.csr_matrix((times, cols, indptr), shape=(len(lengths), n_cols))
    np.testing.assert_array_equal(mt.time_ranks(ts, dense=True), _lexsort_dense_ranks(ts))
    np.testing.assert_array_equal(mt.time_ranks(ts, dense=False), _lexsort_strict_ranks(ts))


def test_time_ranks_refuse_an_indptr_that_is_not_a_partition() -> None:
    ts = sp.csr_matrix(np.array([[1.0, 2.0]]))
    ts.indptr = np.array([0, 3], ts.indptr.dtype)
    with pytest.raises(ValueError, match="row partition"):
        mt.time_ranks(ts, dense=True)


_WEIGHTS = [0.0, 1.0, -0.5, 3e-3, 2.0**-60, 2.0**-64, 2.0**-70, 2.0**-126, 2.0**-130, 1e-45, -1e-42]


@settings(max_examples=150, deadline=None)
@given(
    rows=st.integers(1, 5),
    inner=st.integers(1, 30),
    cols=st.integers(1, 40),
    seed=st.integers(0, 10_000),
    special=st.booleans(),
)
def test_csr_product_equals_scipys_to_the_bit_with_tiny_weights(
    rows: int, inner: int, cols: int, seed: int, special: bool
) -> None:
    """Weights down to subnormals (old events' recency weights) take the exact double path:
    the products and sums are SciPy's own, bit for bit, including subnormal results."""
    rng = np.random.default_rng(seed)
    x = sp.random(rows, inner, density=0.6, random_state=seed, format="csr", dtype=np.float32)
    x.data = rng.choice(np.array(_WEIGHTS, np.float32), x.nnz) * rng.random(x.nnz).astype(
        np.float32
    )
    m = sp.random(inner, cols, density=0.5, random_state=seed + 1, format="csr", dtype=np.float32)
    m.data = (m.data * rng.choice([1.0, -1.0, 1e-30, 1e-40, 50.0], m.nnz)).astype(np.float32)
    if special and m.nnz:
        m.data[rng.integers(0, m.nnz)] = rng.choice([np.inf, -np.inf, np.nan])
    with np.errstate(all="ignore"):
        want = (x @ m).toarray()
    got = mt.csr_product_dense(x, m)
    assert got.dtype == np.float32
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got.view(np.uint32)[~nan], want.view(np.uint32)[~nan])


def test_zero_weights_of_a_finite_matrix_are_skipped_with_scipys_answer() -> None:
    """A history whose old events weigh 0 (recency) gives SciPy's product to the bit, and the
    zero rows are not read: a matrix whose skipped rows hold NaN answers as if they held 1."""
    rng = np.random.default_rng(3)
    m = sp.random(40, 30, density=0.4, random_state=4, format="csr", dtype=np.float32)
    m.data = (m.data - 0.5).astype(np.float32)  # negative products too (±0 sums)
    data = np.where(rng.random(25) < 0.5, 0.0, rng.random(25)).astype(np.float32)
    x = sp.csr_matrix(
        (data, np.sort(rng.choice(40, 25, replace=False)), np.array([0, 25])), shape=(1, 40)
    )
    got = mt.csr_product_dense(x, m)
    want = (x @ m).toarray()
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    assert not np.signbit(got[got == 0]).any()  # a sum that starts at +0 stays +0
    # the same matrix with NaN in it is not finite: zero weights are multiplied (0 · NaN)
    m.data = m.data.copy()
    m.data[m.indptr[x.indices[data == 0][0]]] = np.nan
    with np.errstate(all="ignore"):
        want_nan = (x @ m).toarray()
    np.testing.assert_array_equal(np.isnan(mt.csr_product_dense(x, m)), np.isnan(want_nan))


def test_finite_values_are_worked_out_once_per_array() -> None:
    a = np.ones(10, np.float32)
    assert mt.finite_values(a)
    b = a.copy()
    b[3] = np.inf
    assert not mt.finite_values(b)
    key = id(b)
    del b  # freed: its entry goes, so a new array under the same id is checked afresh
    assert key not in mt._FINITE
    assert mt.finite_values(a)
