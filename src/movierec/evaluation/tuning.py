"""Random search of model configs on the validation split of a protocol (never the test split)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from movierec.data.splits import Protocol
from movierec.data.tables import Tables
from movierec.evaluation.metrics import lower_is_better
from movierec.evaluation.runner import run_evaluation

#: Each model's search space: name -> list of values to draw from.
SEARCH_SPACES: dict[str, dict[str, list[Any]]] = {
    "popularity": {
        "mode": ["count", "rating", "trending"],
        "half_life_days": [7, 30, 90, 365, 1000],
    },
    "itemknn": {
        "neighbors": [25, 50, 100, 200, 400],
        "weighting": ["binary", "bm25", "tfidf"],
        "shrink": [0.0, 5.0, 20.0],
        "recency_half_life": [None, 1.0, 2.0, 4.0, 8.0],
    },
    "als": {
        "factors": [32, 64, 128],
        "regularization": [0.01, 0.05, 0.1, 0.5, 1.0],
        "alpha": [1.0, 2.0, 5.0, 10.0, 20.0],
        "iterations": [10, 15, 20],
    },
    "bpr": {
        "factors": [32, 64, 128],
        "learning_rate": [0.01, 0.05, 0.1],
        "regularization": [0.001, 0.01, 0.1],
        "iterations": [50, 100, 200],
    },
    "ease": {
        "l2": [50.0, 100.0, 200.0, 400.0, 800.0, 1500.0],
        "recency_half_life": [None, 1.0, 2.0, 3.0, 4.0],
        "dropout": [0.0, 0.25, 0.5],
    },
    "genre": {
        "tag_weight": [0.0, 0.25, 0.5, 1.0],
        "popularity_weight": [0.0, 0.05, 0.2, 0.5, 1.0, 2.0, 5.0],
    },
    "mf": {
        "factors": [16, 32, 64],
        "regularization": [0.05, 0.1, 0.15, 0.2, 0.3],
        "bias_regularization": [1.0, 5.0, 15.0],
    },
}


def random_search(
    model: str,
    tables: Tables,
    protocol: Protocol,
    metric: str,
    trials: int,
    seed: int = 0,
    ks: list[int] | None = None,
    dataset: str = "",
    on_trial: Callable[[int, dict[str, Any], float], None] | None = None,
) -> dict[str, Any]:
    """Draw ``trials`` configs (the first is the default) and score each on the validation split.

    Returns:
        ``{"model", "protocol", "metric", "trials": [{"params", "value"}], "best": {...}}``.
    """
    space = SEARCH_SPACES[model]
    rng = np.random.default_rng(seed)
    ks = ks or [10, 20]
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for t in range(trials):
        params: dict[str, Any] = {}
        if t > 0:
            for _ in range(20):
                params = {k: v[int(rng.integers(len(v)))] for k, v in space.items()}
                key = repr(sorted(params.items()))
                if key not in seen:
                    break
            seen.add(repr(sorted(params.items())))
        res = run_evaluation(
            tables,
            protocol,
            [model],
            ks,
            seeds=1,
            params={model: params},
            stage="valid",
            dataset=dataset,
        )
        value = float(res["models"][model][metric])
        out.append({"params": params, "value": value})
        if on_trial is not None:
            on_trial(t, params, value)
    lower = lower_is_better(metric)
    best = min(out, key=lambda x: x["value"]) if lower else max(out, key=lambda x: x["value"])
    return {
        "model": model,
        "dataset": dataset,
        "protocol": protocol,
        "stage": "valid",
        "metric": metric,
        "lower_is_better": lower,
        "trials": out,
        "best": best,
    }
