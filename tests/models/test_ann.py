"""Approximate top-k for factor models: recall against exact search, seen items left out."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from movierec.models.ann import AnnIndex
from movierec.models.topk import topk
from movierec.strategies import create
from tests.models.contract import checkerboard


def clustered(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    centers = rng.normal(size=(50, d))
    return (centers[rng.integers(0, 50, n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_recall_against_exact_and_exclusions(kind: str) -> None:
    rng = np.random.default_rng(0)
    items, queries = clustered(20_000, 32, rng), clustered(200, 32, rng)
    seen = sp.random(200, 20_000, density=0.001, format="csr", random_state=1, dtype=np.float32)
    exact = topk(queries @ items.T, 10, exclude=seen).items
    got = AnnIndex(items, kind).top_k(queries, 10, seen)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.items, exact, strict=True)])
    assert recall >= 0.9
    for r in range(200):  # never a seen item, scores are the exact inner products, best first
        row = got.items[r][got.items[r] >= 0]
        assert not set(row) & set(seen[r].indices)
        np.testing.assert_allclose(got.scores[r][: row.size], items[row] @ queries[r], rtol=1e-4)
        assert np.all(np.diff(got.scores[r][: row.size]) <= 1e-6)


def test_a_factor_model_answers_from_an_attached_index() -> None:
    data, options = checkerboard()
    als = create("als", {"factors": 4, "iterations": 15, "regularization": 1.0}).fit(data, options)
    exact = als.recommend(np.arange(40), 5)
    als.use_ann(AnnIndex(als.item_vectors(), "hnsw"))  # type: ignore[attr-defined]
    approx = als.recommend(np.arange(40), 5)
    assert (approx.items == exact.items).mean() > 0.9  # 30 items: HNSW finds them all
    assert not any(set(approx.items[u]) & set(data.matrix[u].indices) for u in range(40))
