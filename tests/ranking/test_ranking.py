from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.data.interactions import InteractionData
from movierec.data.vocab import Vocabulary
from movierec.evaluation.runner import ablation_variants
from movierec.models import TrainOptions
from movierec.ranking.candidates import candidate_recall, generate
from movierec.ranking.diversity import mmr
from movierec.ranking.features import DAY, FeatureStore, QueryContext
from movierec.ranking.labels import label_split
from movierec.ranking.ranker import RankedRecommender
from movierec.ranking.reasons import Trending
from movierec.spare import spare_core
from movierec.strategies import create, load
from tests.models.contract import RecommenderContract, checkerboard

SMALL: dict[str, Any] = {
    "n_estimators": 40,
    "label_items": 4,
    "negatives": None,
    "min_child_samples": 5,
    "source_params": {"als": {"factors": 4, "iterations": 5}},
}


class TestRanked(RecommenderContract):
    name = "ranked"
    params: ClassVar[dict[str, Any]] = SMALL
    oracle_precision = 0.95  # a learned ranker trained on 160 queries: nearly all in-group


class TestRankedDiverse(RecommenderContract):
    name = "ranked"
    params: ClassVar[dict[str, Any]] = {**SMALL, "diversity": 0.3}
    oracle_precision = 0.6  # the re-rank deliberately mixes genres into the top


def _events(n_users: int = 30, n_items: int = 20, seed: int = 0) -> InteractionData:
    rng = np.random.default_rng(seed)
    u, i, r, t = [], [], [], []
    for user in range(n_users):
        items = rng.choice(n_items, size=8, replace=False)
        for j, item in enumerate(items):
            u.append(user)
            i.append(int(item))
            r.append(float(rng.integers(1, 6)))
            t.append(1_500_000_000 + int(rng.integers(0, 400)) * int(DAY) + j)
    return InteractionData.from_arrays(np.array(u), np.array(i), np.array(r), np.array(t))


def _subset(data: InteractionData, before: float) -> InteractionData:
    coo = data.matrix.tocoo()
    keep = data.timestamps <= before
    return InteractionData.from_arrays(
        data.users.ids[coo.row[keep]],
        data.items.ids[coo.col[keep]],
        coo.data[keep],
        data.timestamps[keep],
        users=data.users,
        items=data.items,
    )


def test_item_features_are_point_in_time() -> None:
    """Features as of t are the same whether or not the store also holds later events."""
    data = _events()
    t = float(np.quantile(data.timestamps, 0.5))
    full = FeatureStore.build(data, years := None)
    past = FeatureStore.build(_subset(data, t), years)
    items = np.arange(data.n_items)
    as_of = np.full(items.size, t)
    a, b = full.item_features(items, as_of), past.item_features(items, as_of)
    for name in a:
        if name == "item_decayed_n":
            np.testing.assert_allclose(a[name], b[name], rtol=1e-6)
        else:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # and they really count only the past: item_n equals a direct count
    coo = data.matrix.tocoo()
    direct = np.bincount(coo.col[data.timestamps <= t], minlength=data.n_items)
    np.testing.assert_array_equal(a["item_n"], direct)


def test_item_window_counts_and_rating_mean_by_hand() -> None:
    ts = np.array([0, 10, 20, 40]) * int(DAY) + 1_000_000_000
    data = InteractionData.from_arrays(
        np.array([1, 2, 3, 4]), np.array([7, 7, 7, 7]), np.array([1.0, 2.0, 3.0, 5.0]), ts
    )
    store = FeatureStore.build(data)
    f = store.item_features(np.array([0]), np.array([float(ts[2])]))  # as of day 20
    assert f["item_n"][0] == 3 and f["item_n_7d"][0] == 1 and f["item_n_30d"][0] == 3
    assert f["item_rating_mean"][0] == pytest.approx(2.0)
    assert f["item_days_since_last"][0] == pytest.approx(0.0)
    assert f["item_days_since_first"][0] == pytest.approx(20.0)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(-3, 40)), min_size=1, max_size=60, unique=True
    ),
    st.lists(st.tuples(st.integers(0, 6), st.floats(-5, 50)), min_size=1, max_size=30),
)
def test_the_compiled_log_search_equals_a_search_of_packed_keys(
    events: list[tuple[int, int]], queries: list[tuple[int, float]]
) -> None:
    """Per (item, time): the log position a searchsorted of (item << 34) + time keys gives."""
    users = np.arange(len(events))
    items = np.array([e[0] for e in events])
    days = np.array([e[1] for e in events])
    t0 = 2 * int(DAY)  # some events and queries before 1970: clipped to 0 like the keys were
    data = InteractionData.from_arrays(
        users, items, np.ones(len(events)), t0 + days * int(DAY), items=Vocabulary(np.arange(7))
    )
    store = FeatureStore.build(data)
    q_items = np.array([q[0] for q in queries], np.int64)
    q_times = t0 + np.array([q[1] for q in queries]) * DAY

    def key(i: np.ndarray, t: np.ndarray) -> np.ndarray:
        return (i.astype(np.int64) << 34) + np.clip(t, 0, (1 << 34) - 1).astype(np.int64)

    keys = key(np.repeat(np.arange(7), np.diff(store.item_start)), store.times)
    want = np.searchsorted(keys, key(q_items, np.floor(q_times).astype(np.int64)), "right")
    np.testing.assert_array_equal(store._count_le(q_items, q_times), want)
    with pytest.raises(IndexError):
        store._count_le(np.array([7]), np.array([float(t0)]))


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 6), st.integers(-5, 120)), min_size=1, max_size=80),
    queries=st.lists(st.floats(-10, 160, allow_nan=False), min_size=1, max_size=10),
)
def test_trending_counts_of_the_time_ordered_log_equal_each_items_window(
    events: list[tuple[int, int]], queries: list[float]
) -> None:
    """All items' 30-day counts from one slice of the log equal two searches per item."""
    users = np.arange(len(events))
    items = np.array([e[0] for e in events])
    t0 = 2 * int(DAY)  # events and windows before 1970 are clipped to 0, as in the kernel
    times = t0 + np.array([e[1] for e in events]) * int(DAY) // 2
    data = InteractionData.from_arrays(
        users, items, np.ones(len(events)), times, items=Vocabulary(np.arange(7))
    )
    store = FeatureStore.build(data)
    trending = Trending(store)
    for q in queries:
        as_of = t0 + q * DAY / 2  # also exactly on event times and window edges
        want = store.item_window_count(np.arange(7), np.full(7, as_of), 30)
        np.testing.assert_array_equal(trending.counts(as_of), want)
        assert trending.threshold(as_of) == float(np.quantile(want, 0.99))


def test_store_save_load_roundtrip(tmp_path: Path) -> None:
    data, _ = checkerboard()
    store = FeatureStore.build(data, data.catalog.genres, None, ("a", "b"))
    store.save(tmp_path / "fs")
    loaded = FeatureStore.load(tmp_path / "fs")
    items = np.arange(data.n_items)
    as_of = np.full(items.size, float(data.timestamps.max()))
    a, b = store.item_features(items, as_of), loaded.item_features(items, as_of)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert loaded.genre_names == ("a", "b")


def test_training_queries_only_see_their_past() -> None:
    """Under ``last`` every training query's history precedes its label in time."""
    data = _events()
    pre, values, times, labels = label_split(data, "last", 3, seed=0)
    ts_of = {
        (int(u), int(i)): int(t)
        for u, i, t in zip(*data.matrix.nonzero(), data.timestamps, strict=True)
    }
    assert labels.shape[0] == values.shape[0] > 0
    # every user contributes min(3, n - 2) = 3 queries here
    assert labels.shape[0] == 3 * data.n_users
    for q in range(labels.shape[0]):
        user = q // 3
        label_items = labels[q].indices
        assert label_items.size == 1
        t_label = ts_of[(user, int(label_items[0]))]
        hist = times[q].data
        assert hist.size and hist.max() <= t_label
        assert int(label_items[0]) not in set(values[q].indices.tolist())
    # the sources never train on a label
    assert pre.nnz == data.nnz - 3 * data.n_users


def test_user_features_from_history() -> None:
    v = sp.csr_matrix(np.array([[4.0, 0, 2.0], [0, 0, 0]], np.float32))
    t = sp.csr_matrix(np.array([[10 * DAY, 0, 12 * DAY], [0, 0, 0]]))
    ctx = QueryContext.build(v, t)
    assert ctx.as_of.tolist() == [12 * DAY, 0.0]
    genres = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 1]], np.float32))
    data = InteractionData.from_arrays(
        np.array([1, 1]), np.array([5, 6]), np.array([1.0, 1.0]), np.array([1, 2])
    )
    store = FeatureStore.build(data)
    store.item_genres = genres
    store.item_years = np.array([1990.0, np.nan, 2000.0])
    store.total_log_pop = np.zeros(3)
    feats, taste = store.user_features(ctx)
    assert feats["user_n"].tolist() == [2.0, 0.0]
    assert feats["user_rating_mean"][0] == pytest.approx(3.0)
    assert feats["user_rating_std"][0] == pytest.approx(1.0)
    assert feats["user_span_days"][0] == pytest.approx(2.0)
    assert feats["user_mean_year"][0] == pytest.approx(1995.0)
    assert taste[0].sum() == pytest.approx(1.0) and taste[0, 0] > taste[0, 1]
    assert taste[1].sum() == 0


def test_candidates_merge_sources_with_ranks() -> None:
    data, options = checkerboard()
    sources = {n: create(n).fit(data, options) for n in ("popularity", "itemknn")}
    values, ts = data.matrix[:3], data.timestamp_matrix()[:3]
    cands = generate(sources, values, ts, per_source=5)
    assert (np.diff(cands.rows) >= 0).all()
    for q in range(3):
        pool = set(cands.items[cands.rows == q].tolist())
        assert not pool & set(values[q].indices.tolist())
        for j, name in enumerate(cands.sources):
            top = sources[name].recommend([q], 5).items[0]
            assert set(top.tolist()) <= pool
            sel = (cands.rows == q) & cands.proposed[:, j]
            by_rank = cands.items[sel][np.argsort(cands.ranks[sel, j])]
            np.testing.assert_array_equal(by_rank, top)
    assert cands.proposed.any(axis=1).all()


def test_candidates_of_a_batch_equal_chunks_and_single_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import movierec.ranking.candidates as candidates

    data, options = checkerboard()
    sources = {n: create(n).fit(data, options) for n in ("popularity", "itemknn", "sequential")}
    values, ts = data.matrix[:7], data.timestamp_matrix()[:7]
    whole = generate(sources, values, ts, per_source=4)
    singles = [generate(sources, values[q], ts[q], per_source=4) for q in range(7)]
    # a chunk bound of 2 queries (10 bytes per source score): the chunked path
    monkeypatch.setattr(candidates, "CANDIDATE_CHUNK_BYTES", 2 * 10 * 3 * data.n_items)
    chunked = generate(sources, values, ts, per_source=4)
    assert np.diff(chunked.rows).min() >= 0 and whole.rows.max() == 6
    np.testing.assert_array_equal(
        np.concatenate([c.rows + q for q, c in enumerate(singles)]), whole.rows
    )
    for field in ("rows", "items", "scores", "ranks", "proposed"):
        np.testing.assert_array_equal(getattr(chunked, field), getattr(whole, field))
        if field != "rows":  # a row alone gets what it gets in a batch
            one_by_one = np.concatenate([getattr(c, field) for c in singles])
            np.testing.assert_array_equal(one_by_one, getattr(whole, field))


def test_long_histories_score_als_on_the_helper_thread_with_the_same_candidates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over ``ASIDE_FROM_NNZ`` events ALS runs on the helper thread beside the other sources:
    the same candidates, scores and ranks as when every source runs on the caller's thread."""
    import threading

    import movierec.ranking.candidates as candidates

    data, options = checkerboard()
    sources = {n: create(n).fit(data, options) for n in ("popularity", "als", "itemknn")}
    values, ts = data.matrix[:6], data.timestamp_matrix()[:6]
    monkeypatch.setattr(candidates, "ASIDE_FROM_NNZ", 10**12)
    alone = generate(sources, values, ts, per_source=4)
    threads: list[str] = []
    real = sources["als"].score_rows

    def named(v: sp.csr_matrix, t: sp.csr_matrix | None = None) -> np.ndarray:
        threads.append(threading.current_thread().name)
        out: np.ndarray = real(v, t)
        return out

    monkeypatch.setattr(sources["als"], "score_rows", named)
    monkeypatch.setattr(candidates, "ASIDE_FROM_NNZ", 1)
    aside = generate(sources, values, ts, per_source=4)
    assert threads and threads[0].startswith("movierec-aside")
    for field in ("rows", "items", "scores", "ranks", "proposed"):
        np.testing.assert_array_equal(getattr(aside, field), getattr(alone, field))
    # a lone row with the spare core: no Python thread beside it (three runnable threads on
    # two cores stall the one the spare core is waiting for)
    with spare_core():
        spared = generate(sources, values, ts, per_source=4)
    assert threads[-1] == threading.current_thread().name
    for field in ("rows", "items", "scores", "ranks", "proposed"):
        np.testing.assert_array_equal(getattr(spared, field), getattr(alone, field))


def test_candidate_recall_by_hand() -> None:
    data, options = checkerboard()
    sources = {"popularity": create("popularity").fit(data, options)}
    values = sp.csr_matrix((2, data.n_items), dtype=np.float32)
    cands = generate(sources, values, None, per_source=3)
    top = set(cands.items[cands.rows == 0].tolist())
    inside, outside = sorted(top)[0], next(i for i in range(data.n_items) if i not in top)
    truth = sp.csr_matrix(
        (np.ones(3), ([0, 0, 1], [inside, outside, outside])), shape=(2, data.n_items)
    )
    rec = candidate_recall(cands, truth)
    assert rec["candidate_recall/popularity"] == pytest.approx((0.5 + 0.0) / 2)
    assert rec["candidate_recall/pool"] == pytest.approx(0.25)


def test_mmr_trades_relevance_for_genre_diversity() -> None:
    genres = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1]], np.float32))
    items, scores = np.array([0, 1, 2]), np.array([1.0, 0.9, 0.5])
    np.testing.assert_array_equal(mmr(items, scores, genres, 0.0), [0, 1, 2])
    np.testing.assert_array_equal(mmr(items, scores, genres, 0.7), [0, 2, 1])


def test_ranked_explanations_and_report(tmp_path: Path) -> None:
    data, options = checkerboard()
    model = create("ranked", SMALL).fit(data, options)
    assert isinstance(model, RankedRecommender)
    imp = model.feature_importance()
    assert imp and abs(sum(imp.values()) - 1.0) < 1e-6
    assert model.training_report["train_queries"] > 0
    hist = data.matrix[0]
    rb = model.recommend([0], 3)
    reasons = model.explain(hist, data.timestamp_matrix()[0], rb.items[0])
    assert len(reasons) == 3
    codes = {r.code for rs in reasons for r in rs}
    assert "because_watched" in codes
    for rs in reasons:
        for r in rs:
            if r.code == "because_watched":
                assert r.item in set(hist.indices.tolist())


def test_histgb_baseline_learns_but_is_not_saved(tmp_path: Path) -> None:
    data, options = checkerboard()
    model = create("ranked", {**SMALL, "learner": "histgb"}).fit(data, options)
    rb = model.recommend(np.arange(40), 5)
    assert ((rb.items // 15) == (np.arange(40) // 20)[:, None]).mean() >= 0.9
    with pytest.raises(ValueError, match="lambdarank"):
        model.save(tmp_path / "m")


def test_ranked_bad_config() -> None:
    with pytest.raises(ValueError, match="unknown candidate sources"):
        create("ranked", {"sources": ["nope"]})
    with pytest.raises(ValueError, match="feature groups"):
        create("ranked", {"drop_groups": ["nope"]})


def test_feature_groups_can_be_dropped() -> None:
    data, options = checkerboard()
    model = create("ranked", {**SMALL, "drop_groups": ["user", "cross"]}).fit(data, options)
    assert isinstance(model, RankedRecommender)
    assert not any(n.startswith("user_") for n in model.feature_names)
    assert "genre_affinity" not in model.feature_names
    assert "item_n" in model.feature_names


def test_ablation_variants_cover_sources_groups_and_baseline() -> None:
    v = ablation_variants()
    assert "ranked-no-ease" in v and "ranked-no-cross-features" in v
    assert v["ranked-histgb"][1]["learner"] == "histgb"
    assert "ease" not in v["ranked-no-ease"][1]["sources"]


def test_ranked_loads_through_the_generic_loader(tmp_path: Path) -> None:
    data, options = checkerboard()
    model = create("ranked", SMALL).fit(data, TrainOptions(**{**options.__dict__, "seed": 1}))
    model.save(tmp_path / "r")
    assert (tmp_path / "r" / "features" / "item_log.parquet").is_file()
    assert (tmp_path / "r" / "ranker.txt").read_text().startswith("tree")
    loaded = load(tmp_path / "r")
    np.testing.assert_allclose(loaded.score_users(np.arange(5)), model.score_users(np.arange(5)))


def test_compiled_ranker_scores_like_lightgbm_and_is_cached(tmp_path: Path) -> None:
    data, options = checkerboard()
    model = create("ranked", SMALL).fit(data, options)
    assert isinstance(model, RankedRecommender)
    users = np.arange(data.n_users)
    before = model.score_users(users)
    model.compile_ranker(tmp_path / "cache")
    assert model.learned.compiled is not None
    binaries = list((tmp_path / "cache").glob("*.so"))
    assert len(binaries) == 1
    np.testing.assert_allclose(model.score_users(users), before, rtol=0, atol=1e-9)
    stamp = binaries[0].stat().st_mtime_ns
    again = create("ranked", SMALL).fit(data, options)
    assert isinstance(again, RankedRecommender)
    again.compile_ranker(tmp_path / "cache")  # the same model text: loaded, not recompiled
    assert binaries[0].stat().st_mtime_ns == stamp
    assert len(list((tmp_path / "cache").glob("*.so"))) == 1
    np.testing.assert_allclose(again.score_users(users), before, rtol=0, atol=1e-9)


def test_ranked_shares_sources_fitted_on_the_same_data() -> None:
    import dataclasses

    data, options = checkerboard()
    als = create("als", {"factors": 4, "iterations": 5}).fit(data, options)
    other = create("itemknn", {"neighbors": 3}).fit(data, options)  # not ranked's config
    popularity = create("popularity").fit(data, options)
    done = {"als": als, "itemknn": other, "popularity": popularity}
    shared = dataclasses.replace(options, fitted=done)
    model = create("ranked", SMALL).fit(data, shared)
    assert isinstance(model, RankedRecommender)
    assert model.sources["als"] is als and model.sources["popularity"] is popularity
    assert model.sources["itemknn"] is not other  # a different config is fitted anew
    alone = create("ranked", SMALL).fit(data, options)
    assert alone.sources["als"] is not als
    np.testing.assert_array_equal(
        model.recommend([0, 1], 5).items, alone.recommend([0, 1], 5).items
    )


@pytest.mark.parametrize("mode", ["last", "temporal", "random"])
def test_label_split_builds_only_the_picked_queries(mode: str) -> None:
    data = _events(n_users=40, n_items=25)
    pre, values, times, labels = label_split(data, mode, 3, seed=0)  # type: ignore[arg-type]
    seen: list[np.ndarray] = []

    def pick(valid: np.ndarray) -> np.ndarray:
        seen.append(valid)
        return valid[::3]

    pre2, v2, t2, l2 = label_split(data, mode, 3, seed=0, pick=pick)  # type: ignore[arg-type]
    chosen = seen[0][::3]
    assert chosen.size > 3
    for full, part in ((values, v2), (times, t2), (labels, l2)):
        assert (full[chosen] != part).nnz == 0 and part.shape[0] == chosen.size
    assert (pre.matrix != pre2.matrix).nnz == 0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=300),
    st.sampled_from([0.0, 0.01, 0.5, 0.9, 0.99, 1.0]),
    st.floats(0, 1),
)
def test_count_quantile_equals_numpys(counts: list[int], q: float, zeros: float) -> None:
    """The quantile of counts from their non-zeros is np.quantile's value, to the bit."""
    from movierec.ranking.reasons import count_quantile

    a = np.array(counts, np.float64)
    a[: int(zeros * a.size)] = 0.0  # mostly zeros, as a catalog's 30-day counts are
    np.random.default_rng(len(counts)).shuffle(a)
    assert count_quantile(a, q) == float(np.quantile(a, q))
