from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from movierec.data.interactions import InteractionData
from movierec.data.movielens import load_release
from movierec.data.synthetic import SynthConfig, generate


def test_synthetic_release_is_valid_ml_latest_layout(synth_release: Path) -> None:
    rel = load_release(synth_release)
    assert rel.layout.name == "csv"
    assert all(
        v.report.reject_rows == 0 and v.report.duplicate_rows == 0 for v in rel.tables.values()
    )
    ratings = rel.tables["ratings"].table
    assert ratings.num_rows == 20_000
    per_user = np.bincount(ratings["user_id"].to_numpy())
    assert per_user[per_user > 0].min() >= 20  # MovieLens keeps users with >= 20 ratings
    movies = rel.tables["movies"].table.to_pylist()
    assert all(m["year"] is not None and m["genres"] for m in movies)
    rated = set(ratings["movie_id"].to_pylist())
    assert rated <= {m["movie_id"] for m in movies}
    assert (
        (synth_release / "ratings.csv")
        .read_text()
        .startswith("userId,movieId,rating,timestamp\n1,")
    )


def test_power_law_popularity(synth_release: Path) -> None:
    ratings = load_release(synth_release, kinds=("ratings",)).tables["ratings"].table
    _, counts = np.unique(ratings["movie_id"].to_numpy(), return_counts=True)
    counts = np.sort(counts)[::-1]
    top = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
    assert top > 0.3  # the top 10% of movies get a large share, as in MovieLens


def test_latent_structure_is_learnable(synth_release: Path) -> None:
    """Co-occurrence carries signal: item-item neighbours beat popularity on held-out items."""
    ratings = load_release(synth_release, kinds=("ratings",)).tables["ratings"].table
    data = InteractionData.from_table(ratings)
    x = (data.matrix > 0).astype(np.float64).tocsr()
    rng = np.random.default_rng(0)
    hits_knn = hits_pop = 0
    pop = np.asarray(x.sum(axis=0)).ravel()
    sim = (x.T @ x).toarray()
    np.fill_diagonal(sim, 0)
    for u in rng.choice(data.n_users, 80, replace=False):
        items = x[u].indices
        held = rng.choice(items)
        known = np.setdiff1d(items, [held])
        scores = sim[known].sum(axis=0)
        scores[known] = -np.inf
        pscore = pop.copy()
        pscore[known] = -np.inf
        hits_knn += held in np.argsort(-scores)[:50]
        hits_pop += held in np.argsort(-pscore)[:50]
    assert hits_knn > hits_pop


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", SynthConfig(ratings=3000, seed=3))
    b = generate(tmp_path / "b", SynthConfig(ratings=3000, seed=3))
    assert a == b
    for name in ("ratings.csv", "movies.csv", "links.csv", "tags.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    c = generate(tmp_path / "c", SynthConfig(ratings=3000, seed=4))
    assert (tmp_path / "c" / "ratings.csv").read_bytes() != (
        tmp_path / "a" / "ratings.csv"
    ).read_bytes()
    assert c["ratings"] == 3000


def test_impossible_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path / "x", SynthConfig(ratings=5000, users=10, movies=100))
