from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.models.ease import prune_columns, spd_inverse
from movierec.models.topk import top_indices, topk
from movierec.strategies import create
from tests.models.contract import RecommenderContract, checkerboard


class TestItemKNN(RecommenderContract):
    name = "itemknn"


class TestItemKNNBM25(RecommenderContract):
    name = "itemknn"
    params: ClassVar[dict[str, Any]] = {
        "weighting": "bm25",
        "neighbors": 5,
        "recency_half_life": None,
    }


class TestALS(RecommenderContract):
    name = "als"
    params: ClassVar[dict[str, Any]] = {"factors": 4, "iterations": 15, "regularization": 1.0}


class TestBPR(RecommenderContract):
    name = "bpr"
    params: ClassVar[dict[str, Any]] = {"factors": 8, "iterations": 200, "learning_rate": 0.05}
    oracle_precision = 0.8  # SGD on 40 users: most, not all, of the top 5 is in-group


class TestEASE(RecommenderContract):
    name = "ease"
    params: ClassVar[dict[str, Any]] = {"l2": 10.0}


class TestEASESparse(RecommenderContract):
    """EASE with 8 weights kept per target item (sparse ``B``) passes the same contract."""

    name = "ease"
    params: ClassVar[dict[str, Any]] = {"l2": 10.0, "neighbors": 8}


def test_ease_pruning_keeps_the_largest_weights_of_each_column() -> None:
    b = np.array([[0.0, -5.0, 1.0], [2.0, 0.0, -0.5], [-3.0, 0.25, 0.0]], np.float32)
    assert prune_columns(b, 1).toarray().tolist() == [[0, -5, 1], [0, 0, 0], [-3, 0, 0]]
    assert np.array_equal(prune_columns(b, 3).toarray(), b)
    data, options = checkerboard()
    dense = create("ease", {"l2": 10.0, "neighbors": None}).fit(data, options)
    sparse = create("ease", {"l2": 10.0, "neighbors": 2}).fit(data, options)
    assert isinstance(dense.weights, np.ndarray)  # type: ignore[attr-defined]
    w = prune_columns(dense.weights, 2).toarray()  # type: ignore[attr-defined]
    assert (np.count_nonzero(w, axis=0) <= 2).all()
    np.testing.assert_allclose(sparse.weights.toarray(), w)  # type: ignore[attr-defined]
    x = data.matrix[:5]
    np.testing.assert_allclose(sparse.score_history(x), (x @ w).astype(np.float32), rtol=1e-6)


def test_sparse_ease_scores_by_item_id_equal_the_kept_item_product_to_the_bit() -> None:
    data, options = checkerboard()
    n = data.n_items
    model = create("ease", {"l2": 10.0, "neighbors": 3, "max_items": n - 3}).fit(data, options)
    kept, w = model.kept, model.weights  # type: ignore[attr-defined]
    assert 0 < kept.size < n and sp.issparse(w)
    x = model.scoring_input(data.matrix[:12])
    assert np.isin(x.indices, kept, invert=True).any()  # histories with pruned items too
    col = np.full(n, -1)
    col[kept] = np.arange(kept.size)
    xk = x.tocoo()
    ok = col[xk.col] >= 0  # the kept-item product: pruned history items dropped
    xk = sp.csr_matrix((xk.data[ok], (xk.row[ok], col[xk.col[ok]])), shape=(x.shape[0], kept.size))
    expected = np.full((x.shape[0], n), -np.inf, np.float32)
    expected[:, kept] = (xk @ w).toarray()
    got = model.score_history(x)
    assert got.dtype == np.float32 and np.array_equal(got, expected)


class TestGenre(RecommenderContract):
    name = "genre"


class TestMF(RecommenderContract):
    name = "mf"
    params: ClassVar[dict[str, Any]] = {
        "factors": 4,
        "iterations": 10,
        "regularization": 0.05,
        "bias_regularization": 1.0,
    }
    negatives = True


class TestPopularity(RecommenderContract):
    name = "popularity"
    params: ClassVar[dict[str, Any]] = {"genre_boost": 1.0}

    def test_counts_by_hand(self) -> None:
        data, options = checkerboard()
        model = create("popularity").fit(data, options)
        counts = np.bincount(data.matrix.indices, minlength=data.n_items)
        np.testing.assert_allclose(model.popularity, counts / counts.max())


def test_topk_hand_checked() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [1.0, -np.inf, np.nan, 0.2]], np.float32)
    with_inf = scores.copy()
    with_inf[1, 3] = np.inf  # not finite: never returned, like NaN
    assert topk(with_inf, 3).items[1].tolist() == [0, -1, -1]
    seen = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0]]))
    rb = topk(scores.copy(), 3, exclude=seen)
    assert rb.items.tolist() == [[3, 2, 0], [0, 3, -1]]
    assert rb.scores[0].tolist() == pytest.approx([0.9, 0.5, 0.1])
    assert rb.items.dtype == np.int32
    rb = topk(scores.copy(), 6)
    assert rb.items[0].tolist() == [1, 3, 2, 0, -1, -1]  # ties: smaller index first


def test_top_indices_take_the_smallest_indices_among_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        row = np.full(300, 0.5, np.float32)
        row[rng.choice(300, 100, replace=False)] = 0.1
        best = rng.choice(300, 3, replace=False)
        row[best] = 1.0
        part = top_indices(row[None, :].copy(), 10)[0]
        tied = np.flatnonzero(row == 0.5)[:7]
        assert sorted(part.tolist()) == sorted([*best.tolist(), *tied.tolist()])
        rb = topk(row[None, :].copy(), 10)
        assert rb.items[0].tolist() == [*sorted(best.tolist()), *tied.tolist()]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 4),
    st.sampled_from([1, 40, 127, 300, 2_000, 9_724]),
    st.sampled_from([1, 7, 31, 32, 50, 150]),
    st.sampled_from(["random", "ties", "sorted", "reversed", "mostly-inf", "periodic", "nan"]),
    st.integers(0, 2**31),
)
def test_the_compiled_selection_equals_a_full_sort(
    n: int, m: int, kk: int, kind: str, seed: int
) -> None:
    """The compiled selection is the first kk of a stable sort by (-value, column).

    NaN and +inf count as -inf. Both of the kernel's ways are covered: kk below 32 (a rising
    threshold) and from 32 (block maxima), with rows shorter than 4·kk among them.
    """
    rng = np.random.default_rng(seed)
    a = rng.random((n, m), dtype=np.float32)
    if kind == "ties":
        a = rng.integers(0, 4, (n, m)).astype(np.float32)
    elif kind == "sorted":
        a.sort(axis=1)
    elif kind == "reversed":
        a = -np.sort(a, axis=1)
    elif kind == "mostly-inf":
        a[rng.random((n, m)) < 0.97] = -np.inf
    elif kind == "periodic":
        a[:, :: max(2, m // (4 * kk))] = 2.0
    elif kind == "nan":
        a[rng.random((n, m)) < 0.3] = np.nan
        a[rng.random((n, m)) < 0.3] = -np.inf
        a[rng.random((n, m)) < 0.1] = np.inf
    key = np.where(np.isnan(a) | (a == np.inf), -np.inf, a)
    want = np.argsort(-key, axis=1, kind="stable")[:, : min(kk, m)]
    assert top_indices(a, kk).tolist() == want.tolist()


def test_spd_inverse() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 20))
    g = a @ a.T + 20 * np.eye(20)
    np.testing.assert_allclose(spd_inverse(g.copy()), np.linalg.inv(g), rtol=1e-8, atol=1e-10)


def test_spd_inverse_of_a_large_matrix_runs_single_threaded_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from movierec.models import ease

    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 300)).astype(np.float32)
    g = a @ a.T + 300 * np.eye(300, dtype=np.float32)
    threaded = spd_inverse(g.copy())
    monkeypatch.setattr(ease, "THREADED_LAPACK_MAX", 100)  # 300 items count as "large"
    seen: list[object] = []
    real = ease.threadpool_limits

    def spy(limits: object = None, user_api: object = None) -> object:
        seen.append(limits)
        return real(limits, user_api)

    monkeypatch.setattr(ease, "threadpool_limits", spy)
    single = spd_inverse(g.copy())
    assert seen == [1]
    np.testing.assert_allclose(single, threaded, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(single, np.linalg.inv(g.astype(np.float64)), rtol=1e-3, atol=1e-6)


def test_unknown_model_and_bad_config() -> None:
    with pytest.raises(KeyError):
        create("nope")
    with pytest.raises(ValueError):
        create("als", {"factors": 0})
    with pytest.raises(ValueError):
        create("ease", {"unknown_option": 1})


def test_mf_predictions_are_clipped_and_fall_back() -> None:
    data, options = checkerboard(negatives=True)
    model = create("mf", {"factors": 4, "iterations": 5}).fit(data, options)
    pred = model.predict(np.array([0, 0, -1, 0]), np.array([0, 20, 0, -1]))  # type: ignore[attr-defined]
    assert ((pred >= 0.5) & (pred <= 5.0)).all()
    assert pred[0] > pred[1]  # own-group item above other-group item


def test_config_hash_identifies_config() -> None:
    a, b = create("als").config, create("als", {"factors": 32}).config
    assert a.config_hash() != b.config_hash()
    assert a.config_hash() == create("als").config.config_hash()


class TestSequential(RecommenderContract):
    name = "sequential"


def test_sequential_transitions_by_hand() -> None:
    from movierec.data.interactions import InteractionData
    from movierec.models.sequential import transitions

    # user 1: a -> b -> c ; user 2: a -> c (items 10, 11, 12 -> indices 0, 1, 2)
    data = InteractionData.from_arrays(
        np.array([1, 1, 1, 2, 2]),
        np.array([10, 11, 12, 10, 12]),
        np.ones(5),
        np.array([1, 2, 3, 1, 2]),
    )
    t = transitions(data, window=2).toarray()
    np.testing.assert_allclose(t, [[0, 1, 1 + 0.5], [0, 0, 1], [0, 0, 0]])
    model = create("sequential", {"shrink": 0.0}).fit(data)
    after_a = model.fold_in([0])
    assert after_a[2] > after_a[1] > 0  # c follows a more often than b does


def test_popularity_by_damped_mean_with_a_minimum_count() -> None:
    import numpy as np

    from movierec.data.interactions import InteractionData

    # item 10: 3 ratings of 5; item 20: 1 rating of 5; item 30: 4 ratings of 2
    users = np.array([1, 2, 3, 1, 1, 2, 3, 4])
    items = np.array([10, 10, 10, 20, 30, 30, 30, 30])
    ratings = np.array([5.0, 5, 5, 5, 2, 2, 2, 2])
    data = InteractionData.from_arrays(users, items, ratings, np.arange(8) + 10**9)
    mu = ratings.mean()
    model = create("popularity", {"mode": "mean", "damping": 2.0}).fit(data)
    idx = data.items.index(np.array([10, 20, 30]))
    expected = np.array([(15 + 2 * mu) / 5, (5 + 2 * mu) / 3, (8 + 2 * mu) / 6])
    np.testing.assert_allclose(model.popularity[idx], expected / expected.max(), rtol=1e-6)
    # with a minimum of 2 ratings, item 20 (one rating) ranks last although its mean is high
    model = create("popularity", {"mode": "mean", "damping": 0.0, "min_count": 2}).fit(data)
    order = data.items.ids[np.argsort(-model.popularity)].tolist()
    assert order == [10, 30, 20]
