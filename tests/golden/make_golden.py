"""Answers of every strategy on a fixed synthetic data set: the golden list refactorings keep.

Run ``python -m tests.golden.make_golden OUT.json`` to (re)write the fixture; the test
``tests/test_golden.py`` computes the same answers with the current code and compares.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from movierec.data.synthetic import SynthConfig, generate

STRATEGIES = ("popularity", "itemknn", "als", "bpr", "ease", "genre", "mf", "sequential", "ranked")
PARAMS: dict[str, dict[str, Any]] = {
    "als": {"factors": 16, "iterations": 5},
    "bpr": {"factors": 8, "iterations": 10},
    "mf": {"factors": 8, "iterations": 5},
    "ranked": {
        "sources": ["popularity", "itemknn", "ease", "sequential"],
        "per_source": 30,
        "n_estimators": 30,
        "label_items": 4,
        # the defaults when the answers were written (issue #12 made the ranker cheaper)
        "learning_rate": 0.05,
        "num_leaves": 31,
    },
}
USERS = (0, 1, 2, 7, 42)
K = 10


def _fit_all(folder: Path) -> dict[str, Any]:
    try:  # the code after the house refactoring (issue #11)
        from movierec.data.interactions import InteractionData
        from movierec.data.tables import load_tables
        from movierec.models.base import TrainOptions
        from movierec.settings import Settings
        from movierec.strategies import create

        tables = load_tables(str(folder), Settings(home=folder / "home"))
        data = InteractionData.from_table(tables.ratings).with_catalog(tables.movies, tables.tags)
        options = TrainOptions(seed=3, threads=1)
    except ImportError:  # the code before it
        from movierec.models.registry import create  # type: ignore[no-redef]

        from movierec.data.catalog import Catalog  # type: ignore[no-redef]
        from movierec.data.interactions import InteractionData
        from movierec.data.movielens import load_release

        rel = load_release(folder)
        movies, tags = rel.tables["movies"].table, rel.tables["tags"].table
        data = InteractionData.from_table(rel.tables["ratings"].table)
        options = Catalog.build(data.items, movies, tags).train_options(seed=3, threads=1)
    return {name: create(name, PARAMS.get(name)).fit(data, options) for name in STRATEGIES}


def answers(folder: Path) -> dict[str, Any]:
    """Top-k of known users, a fold-in history and similar items, per strategy."""
    models = _fit_all(folder)
    out: dict[str, Any] = {}
    for name, model in models.items():
        rb = model.recommend(np.array(USERS), K)
        fold = model.fold_in([3, 5, 8, 13])
        top = np.argsort(-fold, kind="stable")[:K]
        entry: dict[str, Any] = {
            "items": rb.items.tolist(),
            "scores": rb.scores.astype(float).round(5).tolist(),
            "fold_in_items": top.tolist(),
        }
        with contextlib.suppress(NotImplementedError):
            entry["similar"] = model.similar_items([0, 4], K).items.tolist()
        out[name] = entry
    return out


def synth(folder: Path) -> Path:
    """The fixed synthetic release the golden answers are computed on."""
    out = folder / "golden-synth"
    generate(out, SynthConfig(ratings=20_000, seed=11))
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        result = answers(synth(Path(tmp)))
    Path(sys.argv[1]).write_text(json.dumps(result, indent=1))
