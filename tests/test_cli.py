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
