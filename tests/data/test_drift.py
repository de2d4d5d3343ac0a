"""Drift indicators by hand arithmetic, the `data drift` command, and the retraining gate."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from movierec.cli.app import app
from movierec.data.drift import Thresholds, compare, gini, ks_statistic, level_of, psi
from movierec.lifecycle.train import train_and_publish
from movierec.settings import Settings

runner = CliRunner()


def test_psi_by_hand() -> None:
    ref, cur = np.array([50.0, 50.0]), np.array([25.0, 75.0])
    want = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi(ref, cur) == pytest.approx(want)  # 0.2747
    assert psi(ref, ref) == 0.0
    # an empty bin is floored at 1e-4, not infinite
    assert math.isfinite(psi(np.array([1.0, 0.0]), np.array([0.0, 1.0])))


def test_gini_by_hand() -> None:
    assert gini(np.array([1, 1, 1, 1])) == pytest.approx(0.0)
    # one of four items has everything: (n + 1 - 2 * sum(cum) / total) / n = (5 - 2*7/4)/4
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
    assert gini(np.array([1, 2, 3])) == pytest.approx((4 - 2 * (1 + 3 + 6) / 6) / 3)


def test_ks_by_hand() -> None:
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.0, 4.0, 5.0, 6.0])
    # ECDFs differ most at x in [2, 3): 0.5 vs 0
    assert ks_statistic(a, b) == pytest.approx(0.5)
    assert ks_statistic(a, a) == 0.0


def test_levels_follow_the_thresholds() -> None:
    th = Thresholds()
    assert level_of({"rating_psi": 0.05, "activity_ks": 0.05}, th) == "none"
    assert level_of({"rating_psi": 0.1, "activity_ks": 0.0}, th) == "moderate"
    assert level_of({"rating_psi": 0.0, "activity_ks": 0.25}, th) == "strong"


def table(users: list[int], items: list[int], ratings: list[float], t0: int = 10**9) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(users, pa.int32()),
            "movie_id": pa.array(items, pa.int32()),
            "rating": pa.array(ratings, pa.float32()),
            "timestamp": pa.array([t0 + i for i in range(len(users))], pa.int64()),
        }
    )


def test_compare_reports_every_indicator() -> None:
    ref = table([1, 1, 2, 2], [10, 11, 10, 12], [4.0, 4.0, 5.0, 3.0])
    cur = table([2, 3, 3, 3], [10, 10, 13, 14], [1.0, 1.0, 1.0, 4.0])
    r = compare(ref, cur)
    v = r["values"]
    assert v["new_users"] == pytest.approx(0.5)  # users 2, 3: 3 is new
    assert v["new_items"] == pytest.approx(2 / 3)  # items 10, 13, 14
    assert v["top100_overlap"] == pytest.approx(1 / 3)  # {10, 11, 12} vs {10, 13, 14}
    assert v["rating_psi"] > 0.25 and r["level"] == "strong"
    assert r["current"]["rows"] == 4 and compare(None, cur)["level"] == "none"


def test_drift_command_writes_report_plot_and_fails_on_level(
    synth_release: Path, tmp_path: Path, settings: Settings
) -> None:
    out, png = tmp_path / "d.json", tmp_path / "d.png"
    args = ["data", "drift", "--ref", str(synth_release), "--cur", str(synth_release)]
    res = runner.invoke(
        app, [*args, "--report", str(out), "--plot", str(png), "--fail-on", "moderate"]
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["level"] == "none" and rep["values"]["rating_psi"] == pytest.approx(0.0)
    assert png.stat().st_size > 5000
    shifted = shifted_release(synth_release, tmp_path)
    res = runner.invoke(
        app,
        [
            "data",
            "drift",
            "--ref",
            str(synth_release),
            "--cur",
            str(shifted),
            "--cur-since",
            "2030-01-01",
            "--fail-on",
            "strong",
        ],
    )
    assert res.exit_code == 4 and "drift is strong" in res.output
    res = runner.invoke(app, ["data", "drift", "--cur", str(synth_release)])
    assert res.exit_code == 0 and "description only" in res.output


def shifted_release(src: Path, tmp_path: Path) -> Path:
    """The release plus 3,000 low ratings by new users, all after 2025-06-15."""
    dst = tmp_path / "shifted"
    shutil.copytree(src, dst)
    with (dst / "ratings.csv").open("a") as f:
        for i in range(3000):
            f.write(f"{100_000 + i // 30},{1 + i % 50},0.5,{1_750_000_000 + i}\n")
    return dst


def test_strong_drift_blocks_promotion_unless_forced(synth_release: Path, tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home")
    first = train_and_publish(
        s, str(synth_release), "popularity", strategies=("popularity",), evaluate=False
    )
    assert first.promoted
    shifted = shifted_release(synth_release, tmp_path)
    kw = {"strategies": ("popularity",), "evaluate": False, "drift_gate": True}
    blocked = train_and_publish(s, str(shifted), "popularity", **kw)  # type: ignore[arg-type]
    assert not blocked.promoted and "strong drift" in blocked.decision["reason"]
    forced = train_and_publish(s, str(shifted), "popularity", force=True, **kw)  # type: ignore[arg-type]
    assert forced.promoted
