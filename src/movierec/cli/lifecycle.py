"""``movierec train``, ``movierec model list|promote|rollback`` and ``movierec scheduler``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from movierec.cli.console import errors, progress, say, step_progress, table, write_json
from movierec.cli.options import DataDirOpt, DatasetOpt, EngineOpt, ParamsOpt, params_with_engine
from movierec.settings import get_settings

model_app = typer.Typer(
    help="The MLflow registry: list versions, promote one, roll back.", no_args_is_help=True
)


def train(
    dataset: DatasetOpt = "ml-latest-small",
    data_dir: DataDirOpt = None,
    model: Annotated[str, typer.Option(help="Default strategy of the bundle.")] = "ease",
    strategies: Annotated[
        str, typer.Option(help="Comma-separated models to put in the bundle.")
    ] = "popularity,itemknn,als,ease,mf,ranked",
    params: ParamsOpt = None,
    engine: EngineOpt = "implicit",
    evaluate: Annotated[
        bool, typer.Option(help="Evaluate and apply the promotion rule (else: promote).")
    ] = True,
    protocol: Annotated[
        str | None, typer.Option(help="Evaluation protocol (default MOVIEREC_TRAIN_PROTOCOL).")
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="Promotion metric (default MOVIEREC_PROMOTE_METRIC).")
    ] = None,
    min_improve: Annotated[
        float | None, typer.Option(help="Least improvement (default MOVIEREC_MIN_IMPROVE).")
    ] = None,
    feedback: Annotated[bool, typer.Option(help="Merge the feedback the service received.")] = True,
    drift_gate: Annotated[
        bool,
        typer.Option(help="Check drift since the served data first; strong drift: no promotion."),
    ] = False,
    force: Annotated[bool, typer.Option(help="Promote even on strong drift.")] = False,
    result_json: Annotated[
        Path | None, typer.Option(help="Write the outcome (version, run, decision) as JSON.")
    ] = None,
    progress_file: Annotated[
        Path | None, typer.Option(help="Append each step's label to this file as it starts.")
    ] = None,
) -> None:
    """Train, evaluate, log to MLflow, register, promote if better, publish atomically."""
    from movierec.lifecycle.train import train_and_publish, train_steps

    names = tuple(n.strip() for n in strategies.split(",") if n.strip())

    with errors(), progress("train", train_steps(names, model, evaluate)) as advance:
        bar = step_progress(advance)

        def step(label: str) -> None:
            bar(label)
            if progress_file is not None:
                with progress_file.open("a") as f:
                    f.write(label + "\n")

        result = train_and_publish(
            get_settings(),
            dataset,
            model,
            strategies=names,
            data_dir=data_dir,
            params=params_with_engine(params, engine),
            evaluate=evaluate,
            protocol=protocol,
            metric=metric,
            min_improve=min_improve,
            use_feedback=feedback,
            drift_gate=drift_gate,
            force=force,
            progress=step,
        )
    write_json(result_json, result.to_dict())
    say(
        f"registered version {result.registered_version} (MLflow run {result.run_id}); "
        f"{'promoted' if result.promoted else 'NOT promoted'}: {result.decision.get('reason')}"
    )
    say(f"feedback merged: {result.feedback}")
    say(
        f"published {result.version} (default {result.default_strategy}; "
        f"strategies {', '.join(result.strategies)}) in {result.seconds:.1f} s"
    )
    shown = ("recall@10", "ndcg@10", "recall@20")
    if result.metrics:
        say(str({k: round(v, 4) for k, v in result.metrics.items() if k in shown}))


@model_app.command("list")
def model_list() -> None:
    """Registered versions with their aliases, metric, protocol and bundle."""
    from movierec.lifecycle.bundle import current_version
    from movierec.lifecycle.tracking import Tracker

    settings = get_settings()
    with errors():
        versions = Tracker(settings).versions()
    if not versions:
        say("no registered versions yet (run `movierec train`)")
        return
    serving = current_version(settings.bundles_dir)
    table(
        f"registered model {settings.registered_model}",
        ("version", "aliases", "metric", "protocol", "bundle", "served", "run"),
        [
            (
                v.version,
                ",".join(v.aliases),
                "" if v.value is None else f"{v.metric} {v.value:.4f}",
                v.protocol,
                v.bundle,
                "yes" if v.bundle == serving else "",
                v.run_id[:12],
            )
            for v in versions
        ],
        right=False,
        no_wrap=("version", "aliases", "served"),
    )


@model_app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="Registered version number to serve.")],
) -> None:
    """Make a version the champion and serve its bundle (the service reloads)."""
    from movierec.lifecycle.promotion import promote

    with errors():
        bundle = promote(get_settings(), version)
    say(f"version {version} is the champion; serving bundle {bundle}")


@model_app.command("rollback")
def model_rollback() -> None:
    """Bring the previous champion back (the service reloads it)."""
    from movierec.lifecycle.promotion import rollback

    with errors():
        version, bundle = rollback(get_settings())
    say(f"rolled back: version {version} is the champion; serving bundle {bundle}")


def scheduler(
    once: Annotated[
        bool, typer.Option(help="Process landed batches, retrain once, and exit.")
    ] = False,
    scan_only: Annotated[
        bool, typer.Option(help="With --once: process landed batches only (no retraining).")
    ] = False,
    scan_every: Annotated[float, typer.Option(help="Seconds between batch scans.")] = 5.0,
) -> None:
    """Retrain every MOVIEREC_TRAIN_INTERVAL and ingest batches dropped in batches/landing/."""
    from movierec.lifecycle.scheduler import Scheduler

    settings = get_settings()
    sched = Scheduler(settings)
    if once:
        outcomes = sched.scan()
        for b in outcomes:
            say(f"batch {b.name}: {b.status} (report {b.report})")
        if scan_only:
            raise typer.Exit(1 if any(b.status == "failed" for b in outcomes) else 0)
        result = sched.retrain()
        if result is None:
            raise typer.Exit(1)
        say(f"version {result.registered_version}: {result.decision.get('reason')}")
        return
    say(
        f"scheduler: retrain every {settings.train_interval} on {settings.train_dataset}; "
        f"drop batches in {sched.folders['landing']}; Ctrl-C stops"
    )
    sched.build(blocking=True, scan_every_s=scan_every).start()
