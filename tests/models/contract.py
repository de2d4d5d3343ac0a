"""The contract every Recommender passes (a subclass per model sets ``name`` and ``params``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from movierec.data.catalog import Catalog
from movierec.data.interactions import InteractionData
from movierec.models import Recommender, TrainOptions
from movierec.strategies import create, load

N_USERS, N_ITEMS = 40, 30  # two taste groups: users 0-19 / items 0-14 and users 20-39 / items 15-29


def checkerboard(negatives: bool = False) -> tuple[InteractionData, TrainOptions]:
    """Users interact only inside their group (the oracle: recommend inside the group)."""
    rng = np.random.default_rng(0)
    users, items, vals, ts = [], [], [], []
    for u in range(N_USERS):
        group = u // 20
        own = np.arange(15) + 15 * group
        liked = rng.choice(own, size=8, replace=False)
        for j, i in enumerate(liked):
            users.append(u + 1)
            items.append(int(i) + 100)
            vals.append(5.0)
            ts.append(1_000_000_000 + u * 100 + j)
        if negatives:
            other = np.arange(15) + 15 * (1 - group)
            for j, i in enumerate(rng.choice(other, size=4, replace=False)):
                users.append(u + 1)
                items.append(int(i) + 100)
                vals.append(1.0)
                ts.append(1_000_000_050 + u * 100 + j)
    data = InteractionData.from_arrays(
        np.array(users), np.array(items), np.array(vals), np.array(ts)
    )
    genres = sp.csr_matrix(
        (np.ones(N_ITEMS, np.float32), (np.arange(N_ITEMS), np.arange(N_ITEMS) // 15)),
        shape=(N_ITEMS, 2),
    )
    catalog = Catalog(
        genres,
        ("g0", "g1"),
        sp.csr_matrix((N_ITEMS, 0), dtype=np.float32),
        (),
        np.full(N_ITEMS, np.nan),
    )
    return data.with_side(catalog), TrainOptions(seed=3, threads=1)


class RecommenderContract:
    name: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}
    negatives: ClassVar[bool] = False
    #: Fraction of top-5 that must fall inside the user's group (the oracle).
    oracle_precision: ClassVar[float] = 1.0

    def fitted(self) -> tuple[Recommender, InteractionData]:
        data, options = checkerboard(self.negatives)
        return create(self.name, self.params).fit(data, options), data

    def test_shapes_and_dtypes(self) -> None:
        model, data = self.fitted()
        rb = model.recommend(np.arange(5), k=7)
        assert rb.items.shape == (5, 7) and rb.scores.shape == (5, 7)
        assert rb.items.dtype == np.int32 and rb.scores.dtype == np.float32
        assert ((rb.items >= -1) & (rb.items < data.n_items)).all()
        valid = rb.items >= 0
        # best first
        s = np.where(valid, rb.scores, -np.inf)
        assert (np.diff(s, axis=1) <= 1e-6).all()

    def test_exclude_seen_really_excludes(self) -> None:
        model, data = self.fitted()
        rb = model.recommend(np.arange(data.n_users), k=data.n_items)
        for u in range(data.n_users):
            seen = set(data.matrix[u].indices.tolist())
            got = set(rb.row(u)[0].tolist())
            assert not (seen & got), f"user {u} got seen items {seen & got}"
        rb_all = model.recommend([0], k=data.n_items, exclude_seen=False)
        assert set(data.matrix[0].indices) <= set(rb_all.row(0)[0].tolist())

    def test_batch_equals_one_by_one(self) -> None:
        model, data = self.fitted()
        users = np.arange(data.n_users)
        batch = model.recommend(users, k=5)
        for u in users[::7]:
            single = model.recommend([u], k=5)
            np.testing.assert_array_equal(single.items[0], batch.items[u])
            np.testing.assert_allclose(single.scores[0], batch.scores[u], rtol=1e-5, atol=1e-6)

    def test_same_seed_same_result(self) -> None:
        a, _ = self.fitted()
        b, _ = self.fitted()
        np.testing.assert_allclose(
            a.score_users(np.arange(6)), b.score_users(np.arange(6)), rtol=1e-5
        )

    def test_save_load_gives_equal_scores(self, tmp_path: Path) -> None:
        model, data = self.fitted()
        model.save(tmp_path / "m")
        loaded = load(tmp_path / "m")
        assert type(loaded) is type(model) and loaded.config == model.config
        np.testing.assert_allclose(
            loaded.score_users(np.arange(data.n_users)),
            model.score_users(np.arange(data.n_users)),
            rtol=1e-5,
        )
        np.testing.assert_array_equal(
            loaded.recommend([1, 2], 4).items, model.recommend([1, 2], 4).items
        )

    def test_checkerboard_oracle(self) -> None:
        model, _ = self.fitted()
        rb = model.recommend(np.arange(N_USERS), k=5)
        group_user = np.arange(N_USERS) // 20
        group_item = rb.items // 15
        inside = (group_item == group_user[:, None]) & (rb.items >= 0)
        assert inside.mean() >= self.oracle_precision

    def test_fold_in_new_user(self) -> None:
        model, _ = self.fitted()
        scores = model.fold_in([0, 1, 2, 3, 4])
        assert scores.shape == (N_ITEMS,) and scores.dtype == np.float32
        others = np.arange(5, N_ITEMS)
        top = others[np.argsort(-scores[others])][:5]
        assert (top < 15).mean() >= self.oracle_precision

    def test_recommend_history_excludes_given_items(self) -> None:
        model, _ = self.fitted()
        hist = sp.csr_matrix(
            (np.ones(3, np.float32), ([0, 0, 0], [16, 17, 18])), shape=(1, N_ITEMS)
        )
        rb = model.recommend_history(hist, k=10)
        assert not {16, 17, 18} & set(rb.row(0)[0].tolist())

    def test_candidates_restrict(self) -> None:
        model, _ = self.fitted()
        cands = np.array([1, 3, 20, 25])
        rb = model.recommend(np.arange(10), k=10, candidates=cands)
        got = rb.items[rb.items >= 0]
        assert set(got.tolist()) <= set(cands.tolist())
        assert (rb.items[:, 4:] == -1).all()

    def test_similar_items(self) -> None:
        model, _ = self.fitted()
        rb = model.similar_items([0, 20], k=3)
        assert rb.items.shape == (2, 3)
        assert 0 not in rb.row(0)[0] and 20 not in rb.row(1)[0]

    def test_errors(self) -> None:
        model, _ = self.fitted()
        with pytest.raises(IndexError):
            model.recommend([N_USERS], 5)
        with pytest.raises(IndexError):
            model.fold_in([N_ITEMS])
        with pytest.raises(ValueError):
            model.recommend([0], 0)
        with pytest.raises(RuntimeError):
            create(self.name, self.params).recommend([0], 3)
