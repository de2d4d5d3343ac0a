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
