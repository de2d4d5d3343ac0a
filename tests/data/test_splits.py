from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from movierec.data import splits


def _table(seed: int = 0, users: int = 30, per_user: int = 12) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, users + 1):
        items = rng.choice(np.arange(1, 60), size=per_user, replace=False)
        for j, i in enumerate(items):
            rows.append(
                (u, int(i), float(rng.integers(1, 11) / 2), 1_000_000_000 + u * 1000 + j * 10)
            )
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "user_id": pa.array(cols[0], pa.int32()),
            "movie_id": pa.array(cols[1], pa.int32()),
            "rating": pa.array(cols[2], pa.float32()),
            "timestamp": pa.array(cols[3], pa.int64()),
        }
    )


def _pairs(split: splits.Split) -> set[tuple[int, int]]:
    t = split.truth.tocoo()
    assert split.users is not None
    return {
        (int(split.train.users.ids[split.users[r]]), int(split.train.items.ids[c]))
        for r, c in zip(t.row, t.col, strict=True)
    }


def test_leave_last_out_takes_the_latest() -> None:
    t = _table()
    s = splits.leave_last_out(t, seed=0)
    assert s.truth.shape[0] == 30 and (np.diff(s.truth.indptr) == 1).all()
    df = t.to_pandas()
    last = df.sort_values("timestamp").groupby("user_id").tail(1)
    expected = {(int(a), int(b)) for a, b in zip(last.user_id, last.movie_id, strict=True)}
    got = _pairs(s)
    assert got <= expected and len(expected - got) == s.skipped["unknown_item"]
    assert s.train.nnz + len(expected) == t.num_rows
    v = splits.leave_last_out(t, seed=0, stage="valid")
    assert v.train.nnz == t.num_rows - 60
    assert not _pairs(v) & got


def test_temporal_test_is_after_train() -> None:
    t = _table()
    s = splits.temporal(t)
    ts_train = s.train.timestamps.max()
    df = t.to_pandas()
    later = df[df.timestamp > ts_train]
    assert len(later) > 0
    assert _pairs(s) <= set(zip(later.user_id, later.movie_id, strict=True))


def test_stratified_fraction_and_determinism() -> None:
    t = _table()
    a, b = splits.stratified(t, seed=1), splits.stratified(t, seed=1)
    assert _pairs(a) == _pairs(b)
    assert _pairs(a) != _pairs(splits.stratified(t, seed=2))
    assert a.truth.nnz + a.skipped["unknown_item"] == 30 * 3  # 25% of 12


def test_kfold_partitions_all_ratings() -> None:
    t = _table()
    folds = splits.kfold_rating(t, seed=0)
    assert len(folds) == 5
    total = sum(f.truth.nnz + sum(f.skipped.values()) for f in folds)
    assert total == t.num_rows


def test_strong_generalization_holds_out_users() -> None:
    t = _table(users=400, per_user=20)
    s = splits.strong_generalization(t, seed=98765)
    assert s.users is None and s.history is not None
    assert s.truth.shape == s.history.shape
    df = t.to_pandas()
    eligible = (df[df.rating > 3.5].groupby("user_id").size() >= 5).sum()
    assert eligible > 20
    assert s.truth.shape[0] == max(1, round(0.0735 * eligible))
    assert s.truth.multiply(s.history).nnz == 0  # fold-in and test are disjoint
    assert (s.train.matrix.data > 3.5).all()


def test_unknown_protocol() -> None:
    with pytest.raises(ValueError):
        splits.make_split("kfold-rating", _table(), 0)  # type: ignore[arg-type]
