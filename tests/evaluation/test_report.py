"""Model reports: training cost, size, latency and accuracy per model (#16)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from mlflow import MlflowClient
from typer.testing import CliRunner

from movierec.cli.app import app
from movierec.evaluation.report import measure, memory_bytes, report_rows
from movierec.lifecycle.tracking import metric_key
from movierec.settings import Settings

runner = CliRunner()


def test_measure_sees_an_allocation_and_cpu_time() -> None:
    with measure() as cost:
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        block += 1.0
        del block
    growth = cost.to_dict("x")["x_rss_growth_mb"]
    assert 150 <= growth <= 400
    assert cost.cpu_s > 0 and cost.wall_s >= cost.cpu_s * 0.2


def test_memory_bytes_counts_arrays_once_and_sparse_parts() -> None:
    a = np.zeros(1000, np.float64)
    m = sp.csr_matrix(np.eye(10, dtype=np.float32))

    class Holder:
        def __init__(self) -> None:
            self.a, self.view, self.d = a, a[10:], {"m": m, "again": [a]}

    expected = 8000 + m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
    assert memory_bytes(Holder()) == expected


def test_report_command_measures_each_model_and_logs_to_mlflow(
    synth_release: Path, tmp_path: Path, settings: Settings
) -> None:
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    res = runner.invoke(
        app,
        [
            "report",
            "--dataset",
            str(synth_release),
            "--models",
            "popularity,als,ease",
            "--params",
            '{"ease": {"recency_half_life": null}}',
            "--output",
            str(out),
            "--plot",
            str(png),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert list(report["models"]) == ["popularity", "als", "ease"]
    for vals in report["models"].values():
        assert 0.0 <= vals["hit@20"] <= 1.0 and 0.0 <= vals["ndcg@10"] <= 1.0
        assert vals["single_avg_ms"] > 0 and vals["single_p95_ms"] > 0
        assert vals["batch_users_per_s"] > 0 and vals["batch_users"] > 0
        assert vals["size_on_disk_mb"] > 0 and vals["size_in_memory_mb"] > 0
        assert vals["fit_seconds"] > 0 and vals["fit_peak_rss_mb"] > 0
    ease, pop = report["models"]["ease"], report["models"]["popularity"]
    # EASE holds item x item weights (128 per item), popularity a vector: sizes say so
    assert ease["size_in_memory_mb"] > 2 * pop["size_in_memory_mb"]
    assert ease["ndcg@10"] > pop["ndcg@10"]
    assert png.stat().st_size > 10_000
    header, rows = report_rows(report)
    assert header[0] == "model" and [r[0] for r in rows] == ["popularity", "als", "ease"]
    run_id = res.output.split("logged to MLflow: run ")[1].split()[0]
    run = MlflowClient(f"sqlite:///{settings.mlflow_db.resolve()}").get_run(run_id)
    assert run.data.tags["kind"] == "report"
    assert run.data.metrics[metric_key("ease.ndcg@10")] == ease["ndcg@10"]
    assert metric_key("ease.fit_peak_rss_mb") in run.data.metrics


def test_report_refuses_a_rating_protocol_and_unknown_models(
    synth_release: Path, settings: Settings
) -> None:
    res = runner.invoke(
        app, ["report", "--dataset", str(synth_release), "--protocol", "kfold-rating"]
    )
    assert res.exit_code == 2 and "ranking protocol" in res.output
    res = runner.invoke(app, ["report", "--dataset", str(synth_release), "--models", "nope"])
    assert res.exit_code == 2 and "unknown model" in res.output
