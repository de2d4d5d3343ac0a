from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.evaluation import metrics as m


def _rel(rows: list[list[int]], n_items: int = 10) -> sp.csr_matrix:
    r = [i for i, row in enumerate(rows) for _ in row]
    c = [x for row in rows for x in row]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def test_hand_computed_values() -> None:
    recs = np.array([[1, 2, 3], [4, 5, -1]])
    rel = _rel([[2, 5], [9]])
    per, evaluated = m.ranking_metrics(recs, rel, [3])
    assert evaluated.tolist() == [True, True]
    assert per["precision@3"].tolist() == pytest.approx([1 / 3, 0.0])
    assert per["recall@3"].tolist() == pytest.approx([1 / 2, 0.0])
    assert per["recall_norm@3"].tolist() == pytest.approx([1 / 2, 0.0])
    d = 1 / math.log2(3)
    assert per["ndcg@3"][0] == pytest.approx(d / (1 + d))
    assert per["map@3"][0] == pytest.approx((1 / 2) / 2)
    assert per["hit@3"].tolist() == [1.0, 0.0]
    assert per["mrr@3"].tolist() == pytest.approx([0.5, 0.0])


def test_users_without_relevant_items_are_reported_not_averaged() -> None:
    per, evaluated = m.ranking_metrics(np.array([[1, 2], [1, 2]]), _rel([[1], []]), [2])
    assert evaluated.tolist() == [True, False]
    assert per["hit@2"].tolist() == [1.0]


def test_recall_normalized_reaches_one() -> None:
    per, _ = m.ranking_metrics(np.array([[1, 2]]), _rel([[1, 2, 3, 4]]), [2])
    assert per["recall_norm@2"][0] == 1.0 and per["recall@2"][0] == 0.5
    assert per["ndcg@2"][0] == pytest.approx(1.0) and per["map@2"][0] == pytest.approx(1.0)


def test_beyond_accuracy() -> None:
    recs = np.array([[0, 1], [0, 2]])
    assert m.coverage(recs, 4, 2) == 0.75
    pop = np.array([4.0, 2.0, 1.0, 0.0])
    assert m.novelty(recs, pop, 4, 2).tolist() == pytest.approx([0.5, 1.0])
    assert m.popularity_bias(recs, pop, 4, 2).tolist() == pytest.approx([0.75, 0.625])
    genres = sp.csr_matrix(np.array([[1, 0], [1, 0], [1, 1]]))
    assert m.intra_list_diversity(recs, genres, 2).tolist() == pytest.approx([0.0, 0.5])
    assert m.rmse(np.array([1.0, 3.0]), np.array([2.0, 3.0])) == pytest.approx(math.sqrt(0.5))
    assert m.mae(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(1.5)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.permutations(list(range(12))), min_size=1, max_size=6),
    st.lists(st.sets(st.integers(0, 11), min_size=1, max_size=6), min_size=6, max_size=6),
)
def test_metric_properties(perms: list[list[int]], rels: list[set[int]]) -> None:
    recs = np.array(perms)[:, :8]
    rel = _rel([sorted(r) for r in rels[: len(perms)]], 12)
    per, _ = m.ranking_metrics(recs, rel, [1, 4, 8])
    for name, vals in per.items():
        assert ((vals >= -1e-12) & (vals <= 1 + 1e-12)).all(), name
    assert (per["recall@4"] <= per["recall@8"] + 1e-12).all()
    assert (per["hit@1"] <= per["hit@4"]).all()
    # a perfect ranking scores 1
    ideal = np.array(
        [sorted(r) + [x for x in range(12) if x not in r] for r in rels[: len(perms)]]
    )[:, :8]
    best, _ = m.ranking_metrics(ideal, rel, [4])
    assert best["ndcg@4"] == pytest.approx(np.ones(len(perms)))
    assert best["recall_norm@4"] == pytest.approx(np.ones(len(perms)))
