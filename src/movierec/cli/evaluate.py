"""``movierec evaluate`` and ``movierec tune``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from movierec.cli.console import (
    errors,
    progress,
    say,
    step_progress,
    table,
    write_json,
    write_plot,
)
from movierec.cli.options import (
    DataDirOpt,
    DatasetOpt,
    EngineOpt,
    OutputOpt,
    ParamsOpt,
    PlotOpt,
    params_with_engine,
)
from movierec.settings import get_settings


def evaluate(
    dataset: DatasetOpt = "ml-latest-small",
    data_dir: DataDirOpt = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="leave-last-out | temporal | stratified | kfold-rating | strong-generalization"
        ),
    ] = "leave-last-out",
    models: Annotated[
        str | None, typer.Option(help="Comma-separated model names (default: all that apply).")
    ] = None,
    k: Annotated[
        list[int] | None, typer.Option("--k", help="Cut-offs (repeat: --k 10 --k 20).")
    ] = None,
    seeds: Annotated[
        int, typer.Option(min=1, help="Seeds 0..N-1; means and standard errors over them.")
    ] = 1,
    relevance: Annotated[
        float | None,
        typer.Option(help="Only held-out ratings >= this are relevant (default: all)."),
    ] = None,
    params: ParamsOpt = None,
    engine: EngineOpt = "implicit",
    output: OutputOpt = None,
    plot: PlotOpt = None,
    ablation: Annotated[
        bool,
        typer.Option(
            help="Also evaluate `ranked` with each candidate source and each feature group "
            "removed (and the HistGradientBoosting baseline learner)."
        ),
    ] = False,
) -> None:
    """Train and evaluate models under one protocol; print a table and write JSON (and a plot)."""
    from movierec.data.tables import load_tables
    from movierec.evaluation.plots import plot_results
    from movierec.evaluation.runner import (
        check_request,
        default_models,
        evaluation_steps,
        run_evaluation,
    )

    names = [m.strip() for m in models.split(",")] if models else default_models(protocol)
    with errors():
        proto = check_request(protocol, names)
        overrides = params_with_engine(params, engine)
        settings = get_settings()
        tables = load_tables(dataset, settings, data_dir, kinds=("movies", "tags"))
        steps = evaluation_steps(protocol, names, seeds, ablation)
        with progress("evaluate", steps) as advance:
            result = run_evaluation(
                tables,
                proto,
                names,
                sorted(set(k or [10, 20])),
                seeds,
                overrides,
                relevance=relevance,
                dataset=dataset,
                progress=step_progress(advance),
                ablation=ablation,
                memory_limit=settings.memory_limit,
            )
    print_results(result)
    write_json(output, result)
    write_plot(plot, lambda path: plot_results(result, path))


def print_results(result: dict[str, Any]) -> None:
    """Metrics as rows, models as columns (standard errors are in the JSON)."""
    models: dict[str, dict[str, float]] = result["models"]
    if result["protocol"] == "kfold-rating":
        metrics = ["rmse", "mae"]
    else:
        ks = result["k"]
        metrics = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
        metrics += [f"map@{ks[0]}", f"hit@{ks[0]}", f"coverage@{ks[-1]}"]
    table(
        f"{result['dataset']} · {result['protocol']} · {result.get('seeds')} seed(s)",
        ("metric", *models),
        [
            (metric, *[f"{vals.get(metric, float('nan')):.4f}" for vals in models.values()])
            for metric in metrics
        ],
    )
    k0 = result.get("k", [10])[0]
    groups = [
        g for g in ("cold", "warm", "heavy") if any(f"{g}:ndcg@{k0}" in v for v in models.values())
    ]
    if groups:
        by_group = (f"recall@{k0}", f"ndcg@{k0}", f"long_tail@{k0}")
        table(
            f"by user activity (cold: < 20 training interactions, heavy: top 10%) at k={k0}",
            ("model", "group", "users", *by_group),
            [
                (
                    name,
                    g,
                    vals.get(f"users_{g}", 0),
                    *[f"{vals.get(f'{g}:{m}', float('nan')):.4f}" for m in by_group],
                )
                for name, vals in models.items()
                for g in groups
            ],
        )
    cmp = result.get("comparison")
    if cmp:
        k0 = result["k"][0]
        shown = (f"recall@{k0}", f"ndcg@{k0}")
        table(
            "ranked minus each model (paired by seed, ± standard error)",
            ("model", *shown),
            [
                (other, *[f"{diffs[m]['diff']:+.4f} ± {diffs[m]['se']:.4f}" for m in shown])
                for other, diffs in cmp["differences"].items()
            ],
        )


def tune(
    model: Annotated[str, typer.Argument(help="Model to tune (its search space is built in).")],
    dataset: DatasetOpt = "ml-latest-small",
    data_dir: DataDirOpt = None,
    protocol: Annotated[
        str, typer.Option(help="Protocol whose validation split is used.")
    ] = "leave-last-out",
    metric: Annotated[
        str, typer.Option(help="Metric to optimise, e.g. ndcg@10 or rmse.")
    ] = "ndcg@10",
    trials: Annotated[
        int, typer.Option(min=1, help="Configs to try (the first is the default).")
    ] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the random search.")] = 0,
    output: Annotated[
        Path | None, typer.Option(help="Write the trials and the best config here.")
    ] = None,
    track: Annotated[
        bool, typer.Option(help="Log the search to MLflow (a child run per trial).")
    ] = True,
) -> None:
    """Random search on the validation split (never the test split); writes trials and the best."""
    from movierec.data.splits import Protocol
    from movierec.data.tables import load_tables
    from movierec.evaluation.tuning import SEARCH_SPACES, random_search

    if model not in SEARCH_SPACES:
        raise typer.BadParameter(f"unknown model {model!r}")
    ks = sorted({10, 20, int(metric.split("@")[1])}) if "@" in metric else [10]
    with errors():
        tables = load_tables(dataset, get_settings(), data_dir, kinds=("movies", "tags"))
        with progress(f"tune {model}", trials) as advance:
            result = random_search(
                model,
                tables,
                cast(Protocol, protocol),
                metric,
                trials,
                seed,
                ks,
                dataset,
                on_trial=lambda i, p, v: advance(),
            )
    table(
        f"tune {model} · {protocol} (validation) · {metric}",
        ("trial", "params", metric),
        [
            (i, json.dumps(tr["params"]) or "defaults", f"{tr['value']:.4f}")
            for i, tr in enumerate(result["trials"])
        ],
    )
    say(f"best: {json.dumps(result['best'])}")
    write_json(output, result)
    if track:
        from movierec.lifecycle.tracking import Tracker

        with errors():
            run_id = Tracker(get_settings()).log_tuning(result)
        say(f"logged to MLflow: run {run_id} (one child run per trial)")


def report(
    dataset: DatasetOpt = "ml-latest-small",
    data_dir: DataDirOpt = None,
    models: Annotated[
        str | None,
        typer.Option(help="Comma-separated models (default: the strategies `train` bundles)."),
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="Split to measure on: leave-last-out (known users) or strong-generalization "
            "(fold-in of unseen users), ..."
        ),
    ] = "leave-last-out",
    k: Annotated[
        list[int] | None, typer.Option("--k", help="Cut-offs (repeat: --k 10 --k 20).")
    ] = None,
    params: ParamsOpt = None,
    output: OutputOpt = None,
    plot: PlotOpt = None,
    track: Annotated[
        bool, typer.Option(help="Log the report (metrics, JSON, plot) to MLflow as a run.")
    ] = True,
) -> None:
    """Measure each model: accuracy, latency, throughput, size and training cost.

    Per model: accuracy at k, latency avg/p95 (single request and batch of 1,000), throughput,
    size on disk and in memory, training wall/CPU seconds and peak RSS; a table, JSON and a plot.
    """
    from movierec.data.tables import load_tables
    from movierec.evaluation.report import model_report, plot_report, report_rows
    from movierec.evaluation.runner import check_request
    from movierec.lifecycle.train import DEFAULT_STRATEGIES

    names = [m.strip() for m in models.split(",")] if models else list(DEFAULT_STRATEGIES)
    with errors():
        proto = check_request(protocol, names)
        if proto == "kfold-rating":
            raise ValueError("a model report ranks items: use a ranking protocol")
        overrides = json.loads(params) if params else {}
        tables = load_tables(dataset, get_settings(), data_dir, kinds=("movies", "tags"))
        with progress("report", len(names)) as advance:
            result = model_report(
                tables,
                proto,
                names,
                sorted(set(k or [10, 20])),
                overrides,
                dataset=dataset,
                progress=step_progress(advance),
            )
    header, rows = report_rows(result)
    table(f"{dataset} · {protocol} · model report", header, rows)
    write_json(output, result)
    write_plot(plot, lambda path: plot_report(result, path))
    if track:
        from movierec.lifecycle.tracking import Tracker

        with errors():
            run_id = Tracker(get_settings()).log_report(result, plot)
        say(f"logged to MLflow: run {run_id}")
