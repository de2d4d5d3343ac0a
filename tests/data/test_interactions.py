from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from movierec.data import weighting as w
from movierec.data.interactions import InteractionData
from movierec.data.vocab import Vocabulary
from movierec.errors import InvalidDataError


def _table() -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([10, 10, 30, 20], pa.int32()),
            "movie_id": pa.array([5, 7, 5, 100], pa.int32()),
            "rating": pa.array([4.0, 2.0, 5.0, 3.0], pa.float32()),
            "timestamp": pa.array([100, 200, 300, 400], pa.int64()),
        }
    )


def test_vocabulary_maps_and_unknown_is_minus_one() -> None:
    v = Vocabulary.from_ids(np.array([30, 10, 20, 10]))
    assert v.ids.tolist() == [10, 20, 30]
    assert v.index([20, 99, 10, -4]).tolist() == [1, -1, 0, -1]
    assert v.index(np.arange(0, 40)).tolist()[10] == 0  # dense path
    assert v.id_of([2, 0]).tolist() == [30, 10]
    assert 20 in v and 21 not in v
    with pytest.raises(IndexError):
        v.id_of([3])
    with pytest.raises(ValueError):
        v.ids[0] = 1
    assert Vocabulary.from_arrays(v.to_arrays("user"), "user").ids.tolist() == [10, 20, 30]


@given(
    st.lists(st.integers(1, 10**12), min_size=1, max_size=50),
    st.lists(st.integers(-5, 10**12), max_size=50),
)
def test_vocabulary_roundtrip_property(ids: list[int], queries: list[int]) -> None:
    v = Vocabulary.from_ids(np.array(ids))
    idx = v.index(np.array(ids))
    assert (v.id_of(idx) == np.array(ids)).all()
    q = v.index(np.array(queries, dtype=np.int64))
    for raw, i in zip(queries, q, strict=True):
        assert (i >= 0) == (raw in set(ids))


def test_interaction_data_from_table() -> None:
    data = InteractionData.from_table(_table())
    assert (data.n_users, data.n_items, data.nnz) == (3, 3, 4)
    assert data.users.ids.tolist() == [10, 20, 30] and data.items.ids.tolist() == [5, 7, 100]
    dense = data.matrix.toarray()
    assert dense.tolist() == [[4.0, 2.0, 0.0], [0.0, 0.0, 3.0], [5.0, 0.0, 0.0]]
    assert data.matrix.dtype == np.float32 and data.matrix.indices.dtype == np.int32
    assert data.timestamp_matrix().toarray().tolist() == [[100, 200, 0], [0, 0, 400], [300, 0, 0]]
    assert data.density == pytest.approx(4 / 9)
    with pytest.raises(ValueError):
        data.matrix.data[0] = 1.0  # frozen


def test_fingerprint_is_content_based() -> None:
    a = InteractionData.from_table(_table())
    b = InteractionData.from_table(_table().take([3, 2, 1, 0]))  # row order does not matter
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint.to_dict()["rows"] == 4 and len(a.fingerprint.sha256) == 64
    changed = _table().set_column(2, "rating", pa.array([4.0, 2.0, 5.0, 3.5], pa.float32()))
    assert InteractionData.from_table(changed).fingerprint != a.fingerprint


def test_duplicates_are_refused() -> None:
    t = pa.concat_tables([_table(), _table().slice(0, 1)])
    with pytest.raises(InvalidDataError, match="duplicate"):
        InteractionData.from_table(t)


def test_fixed_vocabularies_drop_unknown() -> None:
    t = _table()
    data = InteractionData.from_arrays(
        t["user_id"].to_numpy(),
        t["movie_id"].to_numpy(),
        t["rating"].to_numpy(),
        t["timestamp"].to_numpy(),
        items=Vocabulary(np.array([5, 7])),
    )
    assert data.nnz == 3 and data.n_items == 2


X = sp.csr_matrix(np.array([[4.0, 0.0, 1.0], [2.0, 3.0, 0.0]], dtype=np.float32))


def test_binary_threshold_confidence() -> None:
    assert w.binary(X).toarray().tolist() == [[1, 0, 1], [1, 1, 0]]
    t = w.threshold(X, 2.5)
    assert t.toarray().tolist() == [[1, 0, 0], [0, 1, 0]] and t.nnz == 2
    assert w.confidence(X, 10).toarray().tolist() == [[41, 0, 11], [21, 31, 0]]


def test_bm25_and_tfidf_by_hand() -> None:
    # N = 2 users; df = [2, 1, 1]; idf = log 2 - log(1 + df)
    idf = np.log(2) - np.log1p(np.array([2.0, 1.0, 1.0]))
    got = w.tfidf(X).toarray()
    assert got[0, 0] == pytest.approx(np.sqrt(4) * idf[0])
    assert got[1, 1] == pytest.approx(np.sqrt(3) * idf[1])
    k1, b = 1.2, 0.75
    lengths = np.array([5.0, 5.0])
    norm = (1 - b) + b * lengths / lengths.mean()
    expect = 4.0 * (k1 + 1) / (k1 * norm[0] + 4.0) * idf[0]
    assert w.bm25(X, k1=k1, b=b).toarray()[0, 0] == pytest.approx(expect, rel=1e-6)


def test_time_decay_half_life() -> None:
    ts = np.array([0, 86_400 * 10, 86_400 * 10, 86_400 * 20])
    out = w.time_decay(X, ts, half_life_days=10)
    assert out.data.tolist() == pytest.approx([4.0 * 0.25, 1.0 * 0.5, 2.0 * 0.5, 3.0])
    with pytest.raises(ValueError):
        w.time_decay(X, ts, half_life_days=0)


def test_weightings_never_modify_their_input() -> None:
    x = X.copy()
    w.threshold(x, 2.5)
    w.bm25(x)
    assert (x != X).nnz == 0 and x.nnz == X.nnz


def test_recency_weights_capped_equal_the_plain_power_to_the_bit() -> None:
    """Capping the exponent at 150 halvings (where float32 rounds to 0) changes no weight."""
    ranks = np.arange(3000.0)
    ts = sp.csr_matrix(
        (1.0e9 - ranks, np.arange(ranks.size), np.array([0, ranks.size])),
        shape=(1, ranks.size),
    )  # dense ranks 0 … 2999: exponents on both sides of 150 and of a double's underflow
    for half_life in (0.5, 1.0, 2.0, 3.0, 50.0):
        got = w.recency_weights(ts, half_life)
        want = np.power(0.5, w.time_ranks(ts, dense=True) / half_life).astype(np.float32)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    assert w.recency_weights(ts, 1.0)[150:].max() == 0.0


def test_ranks_shared_computes_a_matrix_s_ranks_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside ``ranks_shared`` the sources' recency weights reuse one sort of the rows (the
    same weights); outside, every call sorts afresh."""
    ts = sp.csr_matrix(np.array([[3.0, 0.0, 1.0, 2.0], [0.0, 5.0, 5.0, 1.0]]))
    want = {h: w.recency_weights(ts, h) for h in (1.0, 2.0)}
    calls = []
    real = w.time_ranks

    def counted(t: sp.csr_matrix, *, dense: bool) -> np.ndarray:
        calls.append(dense)
        return real(t, dense=dense)

    monkeypatch.setattr(w, "time_ranks", counted)
    with w.ranks_shared():
        for h in (1.0, 2.0, 1.0):
            np.testing.assert_array_equal(w.recency_weights(ts, h), want[h])
        with w.ranks_shared():  # a nested block (chunked candidates) has its own memo
            w.recency_weights(ts, 1.0)
        w.recency_weights(ts, 2.0)  # the outer memo is back
    assert len(calls) == 2
    w.recency_weights(ts, 1.0)
    assert len(calls) == 3
