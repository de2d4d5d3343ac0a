from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from movierec.cli import app
from movierec.settings import Settings
from tests.conftest import write

runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["data"],
        ["data", "validate"],
        ["data", "ingest"],
        ["data", "synth"],
        ["data", "stats"],
        ["data", "fetch"],
    ],
)
def test_every_command_has_help(args: list[str]) -> None:
    res = runner.invoke(app, [*args, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output


def test_validate_writes_report_and_reject_file(tmp_path: Path, settings: Settings) -> None:
    f = write(
        tmp_path / "r.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,9,964982703\n"
    )
    rep = tmp_path / "out" / "report.json"
    res = runner.invoke(
        app, ["data", "validate", str(f), "--kind", "ratings", "--report", str(rep)]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(rep.read_text())
    assert (report["input_rows"], report["clean_rows"], report["reject_rows"]) == (2, 1, 1)
    assert report["reject_rate"] == 0.5
    assert report["rejects"][0]["line"] == 3 and report["rejects"][0]["field"] == "rating"
    assert (tmp_path / "out" / "report.rejects.jsonl").exists()
    res = runner.invoke(
        app, ["data", "validate", str(f), "--kind", "ratings", "--max-reject-rate", "0.2"]
    )
    assert res.exit_code == 3
    assert "max-reject-rate" in res.output


def test_validate_bad_header_is_exit_2_with_location(tmp_path: Path, settings: Settings) -> None:
    f = write(tmp_path / "r.csv", "a,b\n1,2\n")
    res = runner.invoke(app, ["data", "validate", str(f), "--kind", "ratings"])
    assert res.exit_code == 2
    assert "bad header" in res.output and "r.csv:1" in res.output


def test_synth_ingest_stats(tmp_path: Path, settings: Settings) -> None:
    out = tmp_path / "syn"
    res = runner.invoke(
        app, ["data", "synth", "--ratings", "5000", "--out", str(out), "--seed", "1"]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["data", "ingest", str(out), "--report", str(tmp_path / "ing.json")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "ing.json").read_text())
    assert {t["table"]: t["rows_after"] for t in summary["tables"]}["ratings"] == 5000
    res = runner.invoke(app, ["data", "ingest", str(out)])
    assert res.exit_code == 0 and "yes" in res.output  # skipped: already ingested
    js, png = tmp_path / "s.json", tmp_path / "s.png"
    res = runner.invoke(
        app, ["data", "stats", "--dataset", str(out), "--json", str(js), "--plot", str(png)]
    )
    assert res.exit_code == 0, res.output
    stats = json.loads(js.read_text())
    assert stats["ratings"] == 5000 and {"users", "movies", "tags", "density"} <= stats.keys()
    assert png.stat().st_size > 10_000


def test_stats_on_real_data(data_dir: Path, tmp_path: Path, settings: Settings) -> None:
    js = tmp_path / "s.json"
    res = runner.invoke(
        app,
        [
            "data",
            "stats",
            "--dataset",
            "ml-latest-small",
            "--data-dir",
            str(data_dir),
            "--json",
            str(js),
        ],
    )
    assert res.exit_code == 0, res.output
    stats = json.loads(js.read_text())
    assert {k: stats[k] for k in ("ratings", "users", "movies", "tags")} == {
        "ratings": 100_836,
        "users": 610,
        "movies": 9_742,
        "tags": 3_683,
    }
    assert stats["density"] == pytest.approx(100_836 / (610 * 9_724))


def test_offline_missing_dataset_is_one_clear_error(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOVIEREC_OFFLINE", "true")
    monkeypatch.setenv("MOVIEREC_DATA_DIR", str(tmp_path))
    from movierec.settings import get_settings

    get_settings.cache_clear()
    res = runner.invoke(app, ["data", "stats", "--dataset", "ml-1m"])
    assert res.exit_code == 2
    assert "MOVIEREC_DATA_DIR" in res.output and "Traceback" not in res.output


def test_ingest_events_file(tmp_path: Path, settings: Settings) -> None:
    f = write(tmp_path / "e.log", "2024-03-01T10:15:02,1,GET /data/m/50/7.mpg\nbad\n")
    res = runner.invoke(app, ["data", "ingest", str(f), "--kind", "events"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["data", "ingest", str(f), "--kind", "events", "--force", "--max-reject-rate", "0.1"]
    )
    assert res.exit_code == 3


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate"],
        ["tune"],
        ["train"],
        ["model", "list"],
        ["model", "promote"],
        ["model", "rollback"],
        ["scheduler"],
        ["ui"],
    ],
)
def test_model_commands_have_help(args: list[str]) -> None:
    res = runner.invoke(app, [*args, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_evaluate_writes_means_and_standard_errors(
    synth_release: Path, tmp_path: Path, settings: Settings
) -> None:
    out, png = tmp_path / "e.json", tmp_path / "e.png"
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--dataset",
            str(synth_release),
            "--protocol",
            "leave-last-out",
            "--models",
            "popularity,ease,itemknn",
            "--k",
            "5",
            "--k",
            "10",
            "--seeds",
            "2",
            "--params",
            # synthetic timestamps carry no order signal: score from the whole history
            '{"ease": {"recency_half_life": null}}',
            "--output",
            str(out),
            "--plot",
            str(png),
        ],
    )
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert result["protocol"] == "leave-last-out" and result["seeds"] == 2
    for name in ("popularity", "ease", "itemknn"):
        m = result["models"][name]
        for key in ("recall@10", "ndcg@10", "precision@10", "map@10", "hit@10", "recall@5"):
            assert 0.0 <= m[key] <= 1.0 and f"{key}_se" in m
        assert m["users_evaluated"] > 0
    # the synthetic data has structure: a learned model beats popularity
    assert result["models"]["ease"]["ndcg@10"] > result["models"]["popularity"]["ndcg@10"]
    assert png.stat().st_size > 10_000


def test_evaluate_kfold_rating_and_strong_generalization(
    synth_release: Path, tmp_path: Path, settings: Settings
) -> None:
    out = tmp_path / "k.json"
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--dataset",
            str(synth_release),
            "--protocol",
            "kfold-rating",
            "--params",
            '{"mf": {"iterations": 3}}',
            "--output",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    mf = json.loads(out.read_text())["models"]["mf"]
    assert 0.3 < mf["rmse"] < 2.0 and mf["mae"] < mf["rmse"]
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--dataset",
            str(synth_release),
            "--protocol",
            "strong-generalization",
            "--models",
            "itemknn",
            "--output",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["models"]["itemknn"]["users_evaluated"] > 0


def test_evaluate_rejects_unknown_model_and_protocol(
    synth_release: Path, settings: Settings
) -> None:
    res = runner.invoke(app, ["evaluate", "--dataset", str(synth_release), "--models", "nope"])
    assert res.exit_code == 2 and "unknown model" in res.output
    res = runner.invoke(app, ["evaluate", "--dataset", str(synth_release), "--protocol", "random"])
    assert res.exit_code == 2 and "unknown protocol" in res.output


def test_tune_writes_trials_and_best(
    synth_release: Path, tmp_path: Path, settings: Settings
) -> None:
    out = tmp_path / "t.json"
    res = runner.invoke(
        app,
        [
            "tune",
            "ease",
            "--dataset",
            str(synth_release),
            "--trials",
            "3",
            "--metric",
            "ndcg@10",
            "--output",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert result["stage"] == "valid" and len(result["trials"]) == 3
    assert result["trials"][0]["params"] == {}
    assert result["best"]["value"] == max(t["value"] for t in result["trials"])
    # the search is in MLflow: a parent run and one child run per trial
    from movierec.lifecycle.tracking import Tracker

    tracker = Tracker(settings)
    runs = tracker.client.search_runs([tracker.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "tune"]
    children = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert len(parents) == 1 and len(children) == 3
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert parents[0].data.metrics["best_ndcg_at_10"] == pytest.approx(result["best"]["value"])


def test_model_cli_list_promote_rollback(synth_release: Path, settings: Settings) -> None:
    res = runner.invoke(app, ["model", "list"])
    assert res.exit_code == 0 and "no registered versions" in res.output
    assert runner.invoke(app, ["model", "rollback"]).exit_code == 2
    for model in ("popularity", "itemknn"):
        res = runner.invoke(
            app,
            ["train", "--dataset", str(synth_release), "--model", model,
             "--strategies", "popularity,itemknn"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert "registered version" in res.output
    res = runner.invoke(app, ["model", "list"])
    assert res.exit_code == 0 and "champion" in res.output and "challenger" in res.output
    res = runner.invoke(app, ["model", "promote", "2"])
    assert res.exit_code == 0 and "version 2 is the champion" in res.output
    res = runner.invoke(app, ["model", "rollback"])
    assert res.exit_code == 0 and "version 1 is the champion" in res.output
    res = runner.invoke(app, ["model", "promote", "42"])
    assert res.exit_code == 2 and "no version 42" in res.output


@pytest.mark.slow
def test_evaluate_ablation_writes_variants_and_differences(
    tmp_path: Path, settings: Settings
) -> None:
    from movierec.data.synthetic import SynthConfig, generate

    data = tmp_path / "synth-5k"
    generate(data, SynthConfig(ratings=5_000, seed=3))
    out = tmp_path / "abl.json"
    fast = {"ranked": {"label_items": 1, "n_estimators": 3, "per_source": 10}}
    res = runner.invoke(
        app,
        ["evaluate", "--dataset", str(data), "--protocol", "leave-last-out",
         "--models", "ease", "--ablation", "--k", "10", "--seeds", "1",
         "--params", json.dumps(fast), "--output", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    names = set(r["models"])
    assert {"ease", "ranked", "ranked-no-ease", "ranked-no-sequential", "ranked-histgb"} <= names
    assert {f"ranked-no-{g}-features" for g in ("source", "user", "item", "cross")} <= names
    assert (
        r["models"]["ranked"]["candidate_recall/pool"]
        >= r["models"]["ranked"]["candidate_recall/ease"]
    )
    assert r["reports"]["ranked"]["feature_importance"]
    d = r["comparison"]["differences"]["ranked-no-user-features"]["ndcg@10"]
    assert set(d) == {"diff", "se"}
    assert r["comparison"]["best_single"] == "ease"
