"""Evaluation extensions (issue #16): long-tail share and metrics by user activity."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from movierec.data.tables import load_tables
from movierec.evaluation import metrics
from movierec.evaluation.plots import plot_results
from movierec.evaluation.runner import run_evaluation
from movierec.settings import Settings


def test_long_tail_share_by_hand() -> None:
    pop = np.array([100.0, 50, 10, 5, 4, 3, 2, 1, 1, 0])  # head (top 20%) = items 0 and 1
    recs = np.array([[0, 1, 2, -1], [3, 0, 9, 8]])
    # k=3: items 0,1,2,3,0,9 -> outside the head: 2,3,9 = 3 of 6
    assert metrics.long_tail_share(recs, pop, 3) == 0.5
    assert metrics.long_tail_share(recs, pop, 2) == 0.25  # 0,1,3,0 -> only 3
    assert metrics.long_tail_share(np.full((2, 3), -1), pop, 3) == 0.0


def test_activity_groups_by_hand() -> None:
    activity = np.array([5, 19, 20, 25, 30, 40, 50, 60, 70, 500])
    g = metrics.activity_groups(activity)
    assert g["cold"].tolist() == [True, True] + [False] * 8
    assert g["heavy"].tolist() == [False] * 9 + [True]  # the top 10%
    assert g["warm"].sum() == 7
    assert (g["cold"] ^ g["warm"] ^ g["heavy"]).all()


def test_evaluate_reports_every_metric_by_activity(synth_release: Path, tmp_path: Path) -> None:
    tables = load_tables(str(synth_release), Settings(home=tmp_path / "h"), kinds=("movies",))
    result = run_evaluation(tables, "leave-last-out", ["popularity", "itemknn"], [10], seeds=1)
    for model in ("popularity", "itemknn"):
        m = result["models"][model]
        assert 0.0 <= m["long_tail@10"] <= 1.0
        groups = [g for g in ("cold", "warm", "heavy") if m.get(f"users_{g}")]
        assert groups and sum(m[f"users_{g}"] for g in groups) == m["users_evaluated"]
        for g in groups:
            for name in ("precision@10", "recall@10", "ndcg@10", "map@10", "hit@10", "mrr@10"):
                assert 0.0 <= m[f"{g}:{name}"] <= 1.0
        # the overall mean is the user-weighted mean of the groups
        total = sum(m[f"{g}:ndcg@10"] * m[f"users_{g}"] for g in groups)
        assert abs(total / m["users_evaluated"] - m["ndcg@10"]) < 1e-9
    assert result["models"]["popularity"]["long_tail@10"] == 0.0  # popularity: all head
    plot_results(result, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
