"""The spare core: kernels that share their rows with it give the answers they give whole."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np

import movierec._kernels as _kernels
from movierec.models.topk import top_indices
from movierec.ranking.compiled import compile_booster
from movierec.ranking.features import DAY
from movierec.ranking.learner import Learned, compiled_entry
from movierec.spare import SPIN_US, spare, spare_core
from tests.ranking.test_feature_kernels import N_ITEMS, _store


def _until_split(call: Callable[[], bool]) -> None:
    """Call until the spare core took part (its first wake-up may take a while)."""
    deadline = time.monotonic() + 10
    while not call():
        assert time.monotonic() < deadline, "the spare core never took part"
        _kernels.spare_wake(SPIN_US)  # spinning again (the block's wake may have timed out)
        time.sleep(0.001)


def test_top_k_rows_shared_with_the_spare_core_equal_the_whole_call() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 50, (9, 700)).astype(np.float32)  # many ties
    scores[2, :5] = np.nan
    scores[4, 10] = np.inf
    whole = top_indices(scores, 60)
    out = np.empty((9, 60), np.int64)
    with spare_core():
        assert spare()
        _until_split(lambda: _kernels.topk_rows(scores, 9, 700, 60, out, True))
        np.testing.assert_array_equal(out, whole)
        np.testing.assert_array_equal(top_indices(scores, 60), whole)  # split inside
    assert not spare()
    time.sleep(0.05)  # the spare core sleeps again: a call outside runs whole
    assert not _kernels.topk_rows(scores, 9, 700, 60, out, True)
    np.testing.assert_array_equal(out, whole)


def test_item_features_shared_with_the_spare_core_equal_the_whole_call() -> None:
    rng = np.random.default_rng(1)
    cols = rng.integers(0, [[N_ITEMS], [800], [10]], (3, 80))
    evs = [(int(i), int(t), int(r)) for i, t, r in cols.T]
    store = _store(evs, 1)
    items = rng.integers(0, N_ITEMS, 1000)  # 16 chunks of pairs
    as_of = 2 * DAY + rng.uniform(-10, 900, items.size) * DAY / 3
    whole = store.item_features(items, as_of)
    cols = np.arange(len(whole))
    out = np.empty((items.size, cols.size), np.float32)
    with spare_core():
        _until_split(lambda: store.item_features_into(items, as_of, out, cols))
        shared = store.item_features(items, as_of)
    for j, (name, values) in enumerate(whole.items()):
        np.testing.assert_array_equal(out[:, j], values, err_msg=name)
        np.testing.assert_array_equal(shared[name], values, err_msg=name)


def test_compiled_trees_shared_with_the_spare_core_equal_the_whole_call(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, 7))
    y = (x[:, 0] + rng.normal(scale=0.5, size=600) > 0).astype(float)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1}, lgb.Dataset(x, y), 20
    )
    learned = Learned(booster=booster, compiled=compile_booster(booster, tmp_path))
    feats = rng.normal(size=(333, 7)).astype(np.float32)
    whole = learned.predict(feats)
    np.testing.assert_allclose(whole, booster.predict(feats), rtol=0, atol=1e-9)
    entry = learned.compiled
    data = np.ascontiguousarray(feats, np.float64)
    out = np.zeros(333)
    with spare_core():
        np.testing.assert_array_equal(learned.predict(feats), whole)
        _until_split(lambda: _kernels.trees_split(compiled_entry(entry), data, out, 333, 7))
        np.testing.assert_array_equal(out, whole)
