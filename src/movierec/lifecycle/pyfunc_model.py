"""The MLflow pyfunc of a movierec bundle (logged as "model from code": no pickle).

``mlflow.pyfunc.load_model(uri).predict(frame)`` answers recommendations for a frame with a
``user_id`` column (and optionally ``k`` and ``strategy``): one row per recommended movie with
``user_id``, ``rank``, ``movie_id``, ``score`` and ``source``. Unknown users get the bundle's
popularity list, marked ``popularity_fallback``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import scipy.sparse as sp

from movierec.lifecycle.bundle import Bundle, load_bundle


class BundleModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """Recommendations from a verified bundle for a frame of user ids."""

    bundle: Bundle

    def load_context(self, context: Any) -> None:
        """Load and verify the bundle shipped as the ``bundle`` artifact."""
        path = Path(context.artifacts["bundle"])
        self.bundle = load_bundle(path.parent, path.name)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Top-k movies per user id (``k`` default 10; ``strategy`` default the bundle's)."""
        b = self.bundle
        frame = pd.DataFrame(model_input)
        if "user_id" not in frame.columns:
            raise ValueError("the input needs a user_id column")
        default_k = int(frame["k"].iloc[0]) if "k" in frame.columns and len(frame) else 10
        strategy = (
            str(frame["strategy"].iloc[0])
            if "strategy" in frame.columns and len(frame)
            else b.default_strategy
        )
        model = b.models[strategy]
        users = frame["user_id"].to_numpy().astype(np.int64)
        idx = b.users.index(users)
        known = idx >= 0
        rows: list[dict[str, Any]] = []
        if known.any():
            rb = model.recommend(idx[known].astype(np.int64), default_k)
            for r, u in enumerate(users[known].tolist()):
                for rank, (i, s) in enumerate(zip(rb.items[r], rb.scores[r], strict=True)):
                    if i >= 0:
                        rows.append(_row(u, rank, int(b.items.ids[i]), float(s), strategy))
        if (~known).any():
            pop = b.models.get("popularity", model)
            scores = pop.score_rows(sp.csr_matrix((1, len(b.items)), dtype=np.float32))[0]
            order = np.argsort(-scores, kind="stable")[:default_k]
            for u in users[~known].tolist():
                for rank, i in enumerate(order.tolist()):
                    rows.append(
                        _row(u, rank, int(b.items.ids[i]), float(scores[i]), "popularity_fallback")
                    )
        return pd.DataFrame(rows, columns=["user_id", "rank", "movie_id", "score", "source"])


def _row(user: int, rank: int, movie: int, score: float, source: str) -> dict[str, Any]:
    return {"user_id": user, "rank": rank + 1, "movie_id": movie, "score": score, "source": source}


mlflow.models.set_model(BundleModel())
