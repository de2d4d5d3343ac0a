"""ALS trained by Spark MLlib (local mode, real JVM) lands in the same model and bundle format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from movierec.models.factor import ALS
from movierec.strategies import create, load
from tests.models.contract import checkerboard

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark_als(tmp_path_factory: pytest.TempPathFactory) -> ALS:
    pytest.importorskip("pyspark")
    data, options = checkerboard()
    model = create("als", {"engine": "spark", "factors": 8, "iterations": 8}).fit(data, options)
    assert isinstance(model, ALS)
    return model


def test_spark_als_learns_the_checkerboard(spark_als: ALS) -> None:
    data, _ = checkerboard()
    assert spark_als.device == "spark"
    assert spark_als.user_factors.shape == (data.n_users, 8)
    assert spark_als.item_factors.shape == (data.n_items, 8)
    assert np.isfinite(spark_als.user_factors).all() and np.abs(spark_als.item_factors).sum() > 0
    rb = spark_als.recommend(np.arange(data.n_users), 5)
    groups = np.arange(data.n_users) // 20
    # 8 of 15 group items are seen: 7 left for a top-5, so chance is 50% and the oracle 100%
    assert ((rb.items // 15) == groups[:, None]).mean() >= 0.9
    # fold-in of a new user through the Spark item factors: inside the group of the history
    scores = spark_als.score_history(data.matrix[:1])
    assert (np.argsort(-scores[0])[:10] // 15 == 0).mean() >= 0.9


def test_spark_als_round_trips_like_any_als(spark_als: ALS, tmp_path: Path) -> None:
    spark_als.save(tmp_path / "als")
    loaded = load(tmp_path / "als")
    assert isinstance(loaded, ALS) and loaded.config.engine == "spark"
    np.testing.assert_array_equal(loaded.item_factors, spark_als.item_factors)
    users = np.arange(5)
    np.testing.assert_allclose(loaded.score_users(users), spark_als.score_users(users))
