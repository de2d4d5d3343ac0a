"""Experiments: assignment, statistics by hand, team draft, online attribution, the service."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from movierec.cli.app import app
from movierec.data.feedback import FeedbackStore
from movierec.data.served import ServedLog
from movierec.experiments.design import (
    Experiment,
    Variant,
    bucket,
    read_experiment,
    write_experiment,
)
from movierec.experiments.interleave import credit, team_draft
from movierec.experiments.online import ab_report, evaluate_online, label_of
from movierec.experiments.stats import mean_diff, msprt_p, sign_test, srm, two_proportion_z, wilson
from movierec.service.app import create_app
from movierec.settings import Settings

AB = Experiment("exp", "s1", (Variant("control", "popularity"), Variant("treatment", "ease")))


def test_assignment_is_stable_and_follows_the_weights() -> None:
    import subprocess
    import sys

    users = range(1, 100_001)
    first = [AB.assign(u).name for u in users]
    assert first == [AB.assign(u).name for u in users]  # same salt, same answer
    # another process (another worker or machine) assigns the same way
    code = (
        "from tests.experiments.test_experiments import AB\n"
        "print(''.join(AB.assign(u).name[0] for u in range(1, 100_001)))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == "".join(n[0] for n in first)
    share = Counter(first)["treatment"] / len(first)
    assert abs(share - 0.5) < 0.01
    heavy = Experiment(
        "exp", "s1", (Variant("control", "popularity", weight=3), Variant("t", "ease"))
    )
    assert abs(Counter(heavy.assign(u).name for u in users)["t"] / 100_000 - 0.25) < 0.01
    # weight 0: nobody; the rest keep their arm
    off = AB.with_weight("treatment", 0.0)
    assert all(off.assign(u).name == "control" for u in users)
    # the bucket is a fixed function of (salt, user): a known value pins it across machines
    assert bucket("s1", 42) == pytest.approx(bucket("s1", 42))
    assert 0.0 <= bucket("s1", 42) < 1.0 and bucket("s1", 42) != bucket("s2", 42)


def test_experiment_file_validation(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    write_experiment(path, AB)
    assert read_experiment(path) == AB
    bad = [
        {"name": "x", "variants": [{"name": "a", "strategy": "ease"}]},
        {
            "name": "x",
            "variants": [{"name": "a", "strategy": "ease"}, {"name": "a", "strategy": "als"}],
        },
        {
            "name": "x",
            "variants": [
                {"name": "a", "strategy": "e", "weight": -1},
                {"name": "b", "strategy": "e"},
            ],
        },
        {
            "name": "x",
            "kind": "interleave",
            "variants": [{"name": n, "strategy": "e"} for n in "abc"],
        },
        {"name": "x", "variants": [{"name": "a"}, {"name": "b", "strategy": "e"}]},
    ]
    for raw in bad:
        path.write_text(json.dumps(raw))
        with pytest.raises(ValueError):
            read_experiment(path)
    assert read_experiment(tmp_path / "none.json") is None


def test_statistics_by_hand() -> None:
    lo, hi = wilson(5, 10)  # p = 0.5, z = 1.96: centre 0.5, half 1.96*sqrt(0.025+0.0096)/1.384
    half = 1.959964 * math.sqrt(0.025 + 1.959964**2 / 400) / (1 + 1.959964**2 / 10)
    assert (lo, hi) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-6)
    diff, z, p = two_proportion_z(40, 100, 60, 100)  # pooled 0.5: se = sqrt(0.25 * 0.02)
    assert diff == pytest.approx(0.2) and z == pytest.approx(0.2 / math.sqrt(0.005))
    assert p == pytest.approx(0.004677, abs=1e-5)
    chi2, p_srm = srm([60, 40], [1, 1])  # (10² + 10²) / 50 = 4
    assert chi2 == pytest.approx(4.0) and p_srm == pytest.approx(0.0455, abs=1e-4)
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    d, v, _, _ = mean_diff([0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0])
    assert d == pytest.approx(0.25) and v == pytest.approx(1 / 3 / 4 + 0.25 / 4)
    # mSPRT: Λ = sqrt(V/(V+τ²)) exp(θ²τ²/(2V(V+τ²))), p = 1/Λ
    v1 = 0.4 * 0.6 / 100 + 0.6 * 0.4 / 100
    lam = math.sqrt(v1 / (v1 + 0.0025)) * math.exp(0.04 * 0.0025 / (2 * v1 * (v1 + 0.0025)))
    assert msprt_p(40, 100, 60, 100) == pytest.approx(min(1, 1 / lam))
    assert msprt_p(40, 100, 60, 100) > p  # always-valid is the more careful one


def test_team_draft_properties() -> None:
    a, b = [1, 2, 3, 4, 5, 6], [3, 7, 1, 8, 9, 10]
    for seed in range(50):
        items, teams = team_draft(a, b, 6, f"s:{seed}")
        assert len(items) == 6 == len(set(items)) == len(teams)
        # every pick is the drafting team's best movie not taken yet
        taken: set[int] = set()
        for m, t in zip(items, teams, strict=True):
            src = a if t == "A" else b
            assert m == next(x for x in src if x not in taken)
            taken.add(m)
        assert abs(teams.count("A") - teams.count("B")) <= 1
    assert team_draft(a, b, 6, "x") == team_draft(a, b, 6, "x")
    assert credit([1, 7, 2], "ABA", {7, 2}) == (1, 1)


def test_online_attribution_by_hand() -> None:
    served = [
        {"user_id": 1, "timestamp": 100, "items": [10, 11, 12], "server": "exp/control"},
        {"user_id": 2, "timestamp": 100, "items": [10, 11, 12], "server": "exp/treatment"},
        {"user_id": 3, "timestamp": 100, "items": [20, 21], "server": "exp/treatment"},
        {"user_id": 4, "timestamp": 100, "items": [30, 31], "server": "tdi/interleaved/AB"},
    ]
    watches = [
        {"user_id": 1, "movie_id": 12, "timestamp": 5000},  # after the 1 h window
        {"user_id": 2, "movie_id": 11, "timestamp": 200},  # converts at position 2
        {"user_id": 3, "movie_id": 99, "timestamp": 150},  # not in the list
        {"user_id": 4, "movie_id": 31, "timestamp": 120},  # credits team B
    ]
    out = evaluate_online(served, watches, 3600)
    assert out["variants"]["exp/control"]["conversions"] == 0
    t = out["variants"]["exp/treatment"]
    assert (t["lists"], t["conversions"], t["wtr"], t["mean_hit_position"]) == (2, 1, 0.5, 2.0)
    assert out["interleaving"]["tdi"] == {
        "impressions": 1,
        "wins_a": 0,
        "wins_b": 1,
        "ties": 0,
        "p": 1.0,
    }
    assert label_of("abc").experiment is None
    rep = ab_report(out, AB)
    assert rep["srm"]["counts"] == [1, 2]  # users per arm
    assert rep["variants"][1]["p"] == 1.0  # one control user: no test yet


def test_the_service_serves_each_user_their_variant_and_follows_the_file(
    tmp_path: Path, home: Path
) -> None:
    s = Settings(home=home, warm_cache=False)
    exp = Experiment(
        "exp", "salt", (Variant("control", "popularity"), Variant("treatment", "ease"))
    )
    write_experiment(s.experiments_path, exp)
    with TestClient(create_app(s)) as c:
        seen = {}
        for u in range(1, 41):
            r = c.get(f"/recommend/user/{u}?k=5")
            assert r.status_code == 200
            want = exp.assign(u)
            assert r.headers["X-Variant"] == f"exp/{want.name}"
            assert r.json()["strategy"] == want.strategy
            seen[u] = r.headers["X-Variant"]
        assert set(seen.values()) == {"exp/control", "exp/treatment"}
        # an explicit strategy is not part of the experiment
        assert "X-Variant" not in c.get("/recommend/user/1?k=5&strategy=ease").headers
        # the guardrail's switch: weight 0, picked up without a restart
        write_experiment(s.experiments_path, exp.with_weight("treatment", 0.0))
        time.sleep(1.1)
        assert all(
            c.get(f"/recommend/user/{u}?k=5").headers["X-Variant"] == "exp/control"
            for u in range(1, 41)
        )
        inter = Experiment(
            "tdi", "s", (Variant("A", "popularity"), Variant("B", "ease")), "interleave"
        )
        write_experiment(s.experiments_path, inter)
        time.sleep(1.1)
        r = c.get("/recommend/user/3?k=6")
        label = r.headers["X-Variant"]
        assert label.startswith("tdi/interleaved/") and len(label.split("/")[2]) == 6
        assert len(r.json()["items"]) == 6


def test_ab_watch_stops_a_worse_variant(tmp_path: Path, settings: Settings) -> None:
    store = FeedbackStore.for_settings(settings.home, None, overlay=False)
    served = ServedLog(store.engine)
    rows, watches = [], []
    for u in range(1, 401):
        arm = AB.assign(u).name
        rows.append(
            {
                "event_key": f"q{u}",
                "timestamp": 1_700_000_000,
                "user_id": u,
                "server": f"exp/{arm}",
                "status": 200,
                "items": "1,2,3",
                "latency_ms": 5.0,
            }
        )
        if arm == "control" or u % 10 == 0:  # control converts always, treatment 10%
            watches.append(
                {
                    "user_id": u,
                    "movie_id": 2,
                    "signal": "watch",
                    "value": 1.0,
                    "source": "t",
                    "timestamp": 1_700_000_100.0,
                    "event_key": f"w{u}",
                }
            )
    served.add_many(rows)
    store.add_events(watches)
    store.close()
    write_experiment(settings.experiments_path, AB)
    res = CliRunner().invoke(app, ["ab", "watch", "--once"])
    assert res.exit_code == 0, res.output
    assert "stopped treatment: worse than control" in res.output
    assert read_experiment(settings.experiments_path).weights()["treatment"] == 0.0  # type: ignore[union-attr]
    res = CliRunner().invoke(app, ["ab", "report", "--report", str(tmp_path / "r.json")])
    assert res.exit_code == 0 and json.loads((tmp_path / "r.json").read_text())["srm"]["counts"]
    res = CliRunner().invoke(app, ["online-eval", "--plot", str(tmp_path / "o.png")])
    assert res.exit_code == 0 and (tmp_path / "o.png").stat().st_size > 5000


def test_a_variant_can_be_an_older_bundle_version_and_online_wtr_is_on_metrics(
    home: Path, synth_release: Path
) -> None:
    from movierec.lifecycle.bundle import current_version
    from movierec.lifecycle.train import train_and_publish

    old = current_version(home / "bundles")
    train_and_publish(
        Settings(home=home),
        str(synth_release),
        "popularity",
        strategies=("popularity",),
        evaluate=False,
    )
    new = current_version(home / "bundles")
    assert old and new and old != new
    s = Settings(home=home, warm_cache=False, online_metrics_s=0.2)
    exp = Experiment(
        "ver", "v", (Variant("champion", "popularity"), Variant("challenger", "ease", version=old))
    )
    write_experiment(s.experiments_path, exp)
    store = FeedbackStore.for_settings(home, None, overlay=False)
    ServedLog(store.engine).add_many(
        [
            {
                "event_key": "q1",
                "timestamp": 1_700_000_000,
                "user_id": 1,
                "server": "ver/champion",
                "status": 200,
                "items": "5,6",
                "latency_ms": 3.0,
            }
        ]
    )
    store.close()
    with TestClient(create_app(s)) as c:
        for u in range(1, 30):
            r = c.get(f"/recommend/user/{u}?k=5")
            want = exp.assign(u)
            assert r.headers["X-Variant"] == f"ver/{want.name}"
            assert r.json()["model_version"] == (old if want.name == "challenger" else new)
        time.sleep(0.6)
        metrics = c.get("/metrics").text
        assert 'movierec_online_lists{served_by="ver/champion"} 1.0' in metrics
        assert 'movierec_online_wtr{served_by="ver/champion"} 0.0' in metrics
