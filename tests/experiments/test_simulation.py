"""The simulation end to end: real broker, API process, consumer; users with a known future."""

from __future__ import annotations

from pathlib import Path

import pytest

from movierec.experiments.simulation import SimPlan, run_simulation
from movierec.settings import Settings

pytestmark = pytest.mark.slow


def test_simulation_reaches_the_right_verdicts(data_dir: Path, tmp_path: Path) -> None:
    plan = SimPlan(control="popularity", treatment="ease", requests=800, seed=0, aa_salts=200)
    out = run_simulation(plan, Settings(home=tmp_path / "home", data_dir=data_dir))
    online = out["online"]["variants"]
    # every served list reached the store exactly once
    assert online["ab/control"]["lists"] + online["ab/treatment"]["lists"] == 800
    assert online["aa/a"]["lists"] + online["aa/b"]["lists"] == 800
    assert online["tdi/interleaved"]["lists"] == 800
    # A/A: no difference, and re-randomised A/A splits are significant about 5% of the time
    assert out["verdicts"]["aa"] == "no difference"
    assert out["aa"]["false_positive_rate"]["rate"] <= 0.12
    # the better ranker (ease, on held-out futures) wins where the test has the power
    ab = {r["variant"]: r for r in out["ab"]["report"]["variants"]}
    assert ab["treatment"]["mean_user_wtr"] > ab["control"]["mean_user_wtr"]
    tdi = out["interleaving"]["report"]
    assert tdi["wins_b"] > tdi["wins_a"] and tdi["p"] < 0.05
    assert not out["ab"]["report"]["srm"]["mismatch"]
    # interleaving reaches the verdict with fewer users than the A/B test (or the A/B never does)
    utv = out["users_to_verdict"]
    assert utv["interleaving"] is not None
    assert utv["ab"] is None or utv["interleaving"] <= utv["ab"]
