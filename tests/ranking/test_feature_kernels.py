"""The compiled feature kernels equal the NumPy expressions they replaced, to the bit.

The references below are the NumPy code the ranker computed its item, cross and source
features with before the kernels (kept here, not in the package: one implementation
ships). Random logs, histories, candidate pairs and similarity matrices; every feature is
compared after the one rounding to float32 both make.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.data.interactions import InteractionData
from movierec.data.vocab import Vocabulary
from movierec.ranking.candidates import Candidates, pool_pairs, source_features
from movierec.ranking.cross import cross_features
from movierec.ranking.features import (
    CROSS_FEATURES,
    DAY,
    DECAY_DAYS,
    ITEM_FEATURES,
    LAST_N,
    WINDOWS,
    FeatureStore,
    QueryContext,
    recency_rank,
)

N_ITEMS = 9


def _ref_item(store: FeatureStore, items: np.ndarray, as_of: np.ndarray) -> dict[str, np.ndarray]:
    items = items.astype(np.int64)
    start = store.item_start[items]
    end = store._count_le(items, as_of)
    n = (end - start).astype(np.float64)
    has = n > 0
    last = np.where(has, end - 1, 0)
    out = {"item_n": n, "item_log_n": np.log1p(n)}
    for w in WINDOWS:
        before = store._count_le(items, as_of - w * DAY)
        out[f"item_n_{w}d"] = (end - np.maximum(before, start)).astype(np.float64)
    scale = DECAY_DAYS * DAY / np.log(2)
    out["item_decayed_n"] = np.where(
        has, store.cum_decay[last] * np.exp(np.minimum((store.t_ref - as_of) / scale, 600)), 0.0
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        out["item_rating_mean"] = np.where(has, store.cum_rating[last] / np.maximum(n, 1), np.nan)
    t_last = np.where(has, store.times[last], 0)
    t_first = store.times[np.minimum(start, store.times.size - 1)]
    out["item_days_since_last"] = np.where(has, (as_of - t_last) / DAY, np.nan)
    out["item_days_since_first"] = np.where(has, (as_of - t_first) / DAY, np.nan)
    out["item_year"] = store.item_years[items]
    out["item_age_years"] = (1970.0 + as_of / (365.25 * DAY)) - store.item_years[items]
    out["item_n_genres"] = np.diff(store.item_genres.indptr)[items].astype(np.float64)
    return out


def _ref_cross(
    store: FeatureStore,
    ctx: QueryContext,
    rows: np.ndarray,
    items: np.ndarray,
    taste: np.ndarray,
    user: dict[str, np.ndarray],
    sim: sp.csr_matrix,
) -> dict[str, np.ndarray]:
    g = store.item_genres
    out: dict[str, np.ndarray] = {}
    sums, mx = np.zeros(items.size), np.zeros(items.size)
    for p, (q, i) in enumerate(zip(rows, items, strict=True)):
        for gi in g.indices[g.indptr[i] : g.indptr[i + 1]]:
            sums[p] += taste[q, gi]
            mx[p] = max(mx[p], taste[q, gi])
    out["genre_affinity"] = sums / np.maximum(np.diff(g.indptr)[items], 1)
    out["genre_affinity_max"] = mx
    rank = recency_rank(ctx.timestamps)
    n_q = ctx.timestamps.shape[0]
    q_rows = np.repeat(np.arange(n_q), np.diff(ctx.timestamps.indptr))
    sel = rank < LAST_N
    at = q_rows[sel] * LAST_N + rank[sel].astype(np.int64)
    indptr = np.zeros(n_q * LAST_N + 1, np.int64)
    np.cumsum(np.bincount(at, minlength=n_q * LAST_N), out=indptr[1:])
    latest = sp.csr_matrix(
        (np.ones(at.size, np.float32), ctx.timestamps.indices[sel][np.argsort(at)], indptr),
        shape=(n_q * LAST_N, ctx.timestamps.shape[1]),
    )
    rr = (rows[:, None] * LAST_N + np.arange(LAST_N)[None, :]).ravel()
    dense = (latest @ sim).toarray()
    stack = dense[rr, np.repeat(items, LAST_N)].astype(np.float64).reshape(items.size, LAST_N)
    n_last = np.minimum(np.diff(ctx.timestamps.indptr), LAST_N)[rows]
    out["sim_last_1"] = stack[:, 0]
    out["sim_last_max"] = stack.max(axis=1)
    out["sim_last_mean"] = stack.sum(axis=1) / np.maximum(n_last, 1)
    out["log_pop_gap"] = store.total_log_pop[items] - user["user_mean_log_pop"][rows]
    out["year_gap"] = store.item_years[items] - user["user_mean_year"][rows]
    return out


def _ref_z(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    counts = np.diff(bounds)
    rows = np.repeat(np.arange(counts.size), counts)
    n = np.maximum(counts, 1)
    mean = np.bincount(rows, values, minlength=counts.size) / n
    var = np.bincount(rows, values**2, minlength=counts.size) / n - mean**2
    return (values - mean[rows]) / np.sqrt(np.maximum(var, 1e-12))[rows]


def _equal(got: np.ndarray, want: np.ndarray, name: str) -> None:
    np.testing.assert_array_equal(got, want.astype(np.float32), err_msg=name)


events = st.lists(
    st.tuples(st.integers(0, N_ITEMS - 1), st.integers(-3, 800), st.integers(1, 10)),
    min_size=1,
    max_size=80,
)


def _store(evs: list[tuple[int, int, int]], seed: int) -> FeatureStore:
    rng = np.random.default_rng(seed)
    t0 = 2 * int(DAY)  # some events before 1970: clipped to 0 like the log's keys
    data = InteractionData.from_arrays(
        np.arange(len(evs)),
        np.array([e[0] for e in evs]),
        np.array([e[2] / 2 for e in evs]),
        t0 + np.array([e[1] for e in evs]) * int(DAY) // 3 + rng.integers(0, 3, len(evs)),
        items=Vocabulary(np.arange(N_ITEMS)),
    )
    genres = sp.random(N_ITEMS, 4, density=0.4, random_state=seed, dtype=np.float32)
    genres.data[:] = 1.0
    years = np.where(rng.random(N_ITEMS) < 0.2, np.nan, rng.integers(1950, 2020, N_ITEMS))
    return FeatureStore.build(data, sp.csr_matrix(genres), years.astype(np.float64))


@settings(max_examples=80, deadline=None)
@given(evs=events, queries=st.lists(st.floats(-10, 900), min_size=1, max_size=40))
def test_item_features_equal_the_numpy_expressions(
    evs: list[tuple[int, int, int]], queries: list[float]
) -> None:
    store = _store(evs, len(evs))
    rng = np.random.default_rng(len(queries))
    items = rng.integers(0, N_ITEMS, len(queries))
    as_of = 2 * DAY + np.array(queries) * DAY / 3
    # a third exactly on event times or on the edge of one of an event's windows
    edge = store.times[rng.integers(0, store.times.size, as_of.size)].astype(np.float64)
    edge += np.array([0, *WINDOWS])[rng.integers(0, 4, as_of.size)] * DAY
    as_of = np.where(rng.random(as_of.size) < 0.35, edge, as_of)
    got = store.item_features(items, as_of)
    want = _ref_item(store, items, as_of)
    assert list(got) == list(ITEM_FEATURES)
    for name in ITEM_FEATURES:
        _equal(got[name], want[name], name)


@settings(max_examples=60, deadline=None)
@given(
    evs=events,
    n_q=st.integers(1, 5),
    n_pairs=st.integers(0, 40),
    seed=st.integers(0, 1000),
)
def test_cross_and_source_features_equal_the_numpy_expressions(
    evs: list[tuple[int, int, int]], n_q: int, n_pairs: int, seed: int
) -> None:
    store = _store(evs, seed)
    rng = np.random.default_rng(seed)
    hist = sp.random(n_q, N_ITEMS, density=0.5, random_state=seed, dtype=np.float32).tocsr()
    hist.data[:] = rng.integers(1, 6, hist.nnz)
    times = hist.copy().astype(np.float64)
    times.data[:] = 2 * DAY + rng.integers(0, 10, hist.nnz) * DAY  # ties in time too
    ctx = QueryContext.build(hist, times)
    user, taste = store.user_features(ctx)
    sim = sp.random(N_ITEMS, N_ITEMS, density=0.4, random_state=seed + 1, dtype=np.float32)
    sim = sp.csr_matrix(sim)
    rows = np.sort(rng.integers(0, n_q, n_pairs))
    items = rng.integers(0, N_ITEMS, n_pairs)
    # columns in a shuffled order, one feature left out: destinations are by name
    names = [*CROSS_FEATURES[1:], "unrelated"]
    rng.shuffle(names)
    out = np.full((n_pairs, len(names)), -7.0, np.float32)
    dest = np.array([names.index(n) if n in names else -1 for n in CROSS_FEATURES])
    cross_features(store, ctx, rows, items, taste, user, sim, out, dest)
    want = _ref_cross(store, ctx, rows, items, taste, user, sim)
    for name in CROSS_FEATURES[1:]:
        _equal(out[:, names.index(name)], want[name], name)
    assert (out[:, names.index("unrelated")] == -7.0).all()

    n_src = 3
    scores = rng.normal(size=(n_pairs, n_src)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = 0.0
    ranks = rng.integers(0, 10, (n_pairs, n_src)).astype(np.float32)
    proposed = rng.random((n_pairs, n_src)) < 0.5
    cands = Candidates(rows, items, ("a", "b", "c"), scores, ranks, proposed)
    keep = rng.random(n_pairs) < 0.7
    where = np.full(n_pairs, -1, np.int64)
    where[keep] = np.arange(keep.sum())
    got = np.empty((int(keep.sum()), 3 * n_src + 1), np.float32)
    source_features(cands, n_q, where, got, np.arange(3 * n_src + 1))
    bounds = cands.bounds(n_q)
    for j in range(n_src):
        sc = scores[:, j].astype(np.float64)
        _equal(got[:, 3 * j], sc[keep], "score")
        _equal(got[:, 3 * j + 1], ranks[keep, j].astype(np.float64), "rank")
        _equal(got[:, 3 * j + 2], _ref_z(sc, bounds)[keep], "z")
    _equal(got[:, -1], proposed[keep].sum(axis=1).astype(np.float64), "n_sources")


def test_kernels_refuse_indices_outside_their_arrays() -> None:
    store = _store([(0, 1, 2), (3, 5, 4)], 0)
    out = np.empty((1, len(ITEM_FEATURES)), np.float32)
    with pytest.raises(IndexError):
        store.item_features_into(np.array([N_ITEMS]), np.array([DAY]), out, np.arange(12))
    with pytest.raises(ValueError, match="destination"):
        store.item_features_into(np.array([0]), np.array([DAY]), out, np.arange(12) + 5)
    with pytest.raises(ValueError, match="float32"):
        store.item_features_into(
            np.array([0]), np.array([DAY]), out.astype(np.float64), np.arange(12)
        )
    ctx = QueryContext.build(sp.csr_matrix((1, N_ITEMS), dtype=np.float32), None)
    user, taste = store.user_features(ctx)
    cross = np.empty((1, 7), np.float32)
    with pytest.raises(IndexError):
        cross_features(
            store, ctx, np.array([1]), np.array([0]), taste, user, None, cross, np.arange(7)
        )
    scores = np.zeros((1, 1, N_ITEMS), np.float32)
    with pytest.raises(ValueError, match="out of range"):
        pool_pairs(scores, np.array([[[N_ITEMS]]]), 5, ("a",))


def _ref_pool(stacked: np.ndarray, prop: np.ndarray, per_source: int) -> tuple[np.ndarray, ...]:
    """The NumPy merge ``generate`` made its pool with before ``_kernels.merge_proposals``."""
    n_src, n_q, n_items = stacked.shape
    kk = prop.shape[2]
    src = np.repeat(np.arange(n_src), n_q * kk)
    prow = np.tile(np.repeat(np.arange(n_q), kk), n_src)
    prank = np.tile(np.arange(kk), n_src * n_q)
    pitem = prop.ravel().astype(np.int64)
    good = pitem >= 0
    src, prow, prank, pitem = src[good], prow[good], prank[good], pitem[good]
    pkey = prow * np.int64(n_items) + pitem
    seen = np.zeros(n_q * n_items, bool)
    seen[pkey] = True
    key = np.flatnonzero(seen)
    rows, items = key // n_items, key % n_items
    scores = stacked[:, rows, items].T
    scores = np.where(np.isfinite(scores), scores, np.float32(0.0))
    ranks = np.full((rows.size, n_src), float(per_source), np.float32)
    proposed = np.zeros((rows.size, n_src), bool)
    pos = np.searchsorted(key, pkey)
    ranks[pos, src] = prank
    proposed[pos, src] = True
    return rows, items, scores, ranks, proposed


@settings(max_examples=150, deadline=None)
@given(
    n_src=st.integers(1, 6),
    n_q=st.integers(0, 4),
    n_items=st.integers(1, 40),
    kk=st.integers(1, 12),
    seed=st.integers(0, 10_000),
)
def test_pool_pairs_equal_the_numpy_merge(
    n_src: int, n_q: int, n_items: int, kk: int, seed: int
) -> None:
    """Pairs, scores (non-finite ones 0), ranks and proposals as the NumPy merge gave them."""
    rng = np.random.default_rng(seed)
    kk = min(kk, n_items)
    stacked = rng.normal(size=(n_src, n_q, n_items)).astype(np.float32)
    stacked[rng.random(stacked.shape) < 0.1] = rng.choice([np.inf, -np.inf, np.nan])
    prop = np.full((n_src, n_q, kk), -1, np.int64)
    for s in range(n_src):
        for q in range(n_q):  # distinct items, some lists cut short as top-k leaves them
            n = int(rng.integers(0, kk + 1))
            prop[s, q, :n] = rng.choice(n_items, n, replace=False)
    got = pool_pairs(stacked, prop, 150, tuple(f"s{j}" for j in range(n_src)))
    want = _ref_pool(stacked, prop, 150)
    for g, w in zip((got.rows, got.items, got.scores, got.ranks, got.proposed), want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    assert got.scores.view(np.uint32).tolist() == want[2].view(np.uint32).tolist()
