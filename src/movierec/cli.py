"""The ``movierec`` command: thin Typer wrappers over the library functions."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from movierec.errors import MovierecError
from movierec.settings import get_settings

if TYPE_CHECKING:
    from movierec.data.ingest import FileKind
    from movierec.data.schema import FileFormat
    from movierec.evaluation.runner import Tables
    from movierec.evaluation.splits import Protocol

FILE_KINDS = ("ratings", "movies", "links", "tags", "events")

app = typer.Typer(
    help="movierec: local-first movie recommendations (data, models, service).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Fetch, validate, ingest, generate and describe data.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
model_app = typer.Typer(
    help="The MLflow registry: list versions, promote one, roll back.", no_args_is_help=True
)
app.add_typer(model_app, name="model")

err = Console(stderr=True)
out = Console()


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Configure logging once for every command."""
    level = "DEBUG" if verbose else get_settings().log_level
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=err, show_path=False)]
    )


def _fail(e: Exception, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
    return typer.Exit(code)


DatasetOpt = Annotated[str, typer.Option(help="Release name (ml-latest-small, ...) or folder.")]
DataDirOpt = Annotated[
    Path | None, typer.Option(help="Folder of releases (default MOVIEREC_DATA_DIR).")
]
OutputOpt = Annotated[Path | None, typer.Option(help="Write the results JSON here.")]
KindOpt = Annotated[str, typer.Option("--kind", help="ratings | movies | links | tags | events")]
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="Layout of the file: csv (ml-latest, ml-20m...), dat "
        "(ml-1m, ml-10m), ml-100k (u.data / u.item).",
    ),
]


def _file_format(kind: str, layout: str) -> FileFormat:
    from movierec.data.movielens import LAYOUT_FILES

    if layout not in LAYOUT_FILES:
        raise typer.BadParameter(f"unknown format {layout!r}; use csv, dat or ml-100k")
    for _, fmt, _ in LAYOUT_FILES[layout]:
        if fmt.kind == kind:
            return fmt
    raise typer.BadParameter(f"format {layout} has no {kind} file")


@data_app.command("validate")
def data_validate(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="File to check.")],
    kind: KindOpt = "ratings",
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(help="Write every reject (JSON lines) here; default: beside the report."),
    ] = None,
    max_reject_rate: Annotated[
        float | None, typer.Option(help="Fail (exit 3) when more than this fraction is rejected.")
    ] = None,
    layout: FormatOpt = "csv",
) -> None:
    """Check a file row by row: every reject gets its line, field and reason."""
    from movierec.data.events import parse_event_file
    from movierec.data.validate import ValidationReport, validate_file

    settings = get_settings()
    if kind not in ("ratings", "movies", "links", "tags", "events"):
        raise typer.BadParameter(f"unknown kind {kind!r}")
    try:
        with _bytes_progress("validating", file.stat().st_size) as advance:
            if kind == "events":
                rep: ValidationReport = parse_event_file(file, dedup=settings.dedup_keep).report
                advance(file.stat().st_size)
            else:
                rep = validate_file(
                    file,
                    _file_format(kind, layout),
                    chunk_bytes=settings.chunk_bytes,
                    dedup=settings.dedup_keep,
                    progress=advance,
                ).report
    except MovierecError as e:
        raise _fail(e) from e
    if report is not None or rejects is not None:
        reject_path = rejects or (report.with_suffix(".rejects.jsonl") if report else None)
        if reject_path is not None:
            rep.write_rejects(reject_path)
        if report is not None:
            rep.write(report, settings.max_rejects_in_report)
    _print_report(rep)
    try:
        rep.check_rate(max_reject_rate)
    except MovierecError as e:
        raise _fail(e, 3) from e


def _print_report(rep: object) -> None:
    from movierec.data.validate import ValidationReport

    assert isinstance(rep, ValidationReport)
    t = Table(title=f"{rep.source} ({rep.kind})")
    for col in ("input", "clean", "rejected", "duplicates", "reject rate"):
        t.add_column(col, justify="right")
    t.add_row(
        str(rep.input_rows),
        str(rep.clean_rows),
        str(rep.reject_rows),
        str(rep.duplicate_rows),
        f"{rep.reject_rate:.3%}",
    )
    out.print(t)
    for r in rep.rejects[:10]:
        out.print(f"  line {r.line}: \\[{escape(r.field)}] {escape(r.reason)}", soft_wrap=True)
    if len(rep.rejects) > 10:
        out.print(f"  ... and {len(rep.rejects) - 10} more")


class _bytes_progress:  # noqa: N801 - used as a context manager function
    def __init__(self, label: str, total: int) -> None:
        self.progress = Progress(
            TextColumn(label),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        self.task = self.progress.add_task(label, total=total)

    def __enter__(self) -> Callable[[int], None]:
        self.progress.__enter__()
        return lambda n: self.progress.advance(self.task, n)

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="Release: ml-latest-small, ml-100k, ml-1m, ...")],
) -> None:
    """Download, verify (MD5 + zip CRC) and unpack an official release into the cache."""
    from movierec.data.movielens import RELEASES, fetch_release

    settings = get_settings()
    if name not in RELEASES:
        raise _fail(ValueError(f"unknown release {name!r}; known: {', '.join(RELEASES)}"))
    progress = Progress(
        TextColumn(f"{name}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    )
    task = progress.add_task("download", total=None)
    try:
        with progress:
            path = fetch_release(
                name,
                settings,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except MovierecError as e:
        raise _fail(e) from e
    out.print(f"{name}: {path}")


@data_app.command("ingest")
def data_ingest(
    source: Annotated[
        str, typer.Argument(help="A release name or folder, or one file (with --kind).")
    ],
    kind: Annotated[
        str | None, typer.Option(help="Kind of a single file: ratings|movies|links|tags|events.")
    ] = None,
    layout: FormatOpt = "csv",
    data_dir: DataDirOpt = None,
    max_reject_rate: Annotated[
        float | None, typer.Option(help="Fail (exit 3), merging nothing, above this reject rate.")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the JSON summary here.")] = None,
    force: Annotated[
        bool, typer.Option(help="Merge even if this exact file was ingested before.")
    ] = False,
) -> None:
    """Validate and merge data into the store (idempotent: a file ingested twice adds nothing)."""
    from movierec.data.ingest import ingest_file, ingest_release
    from movierec.data.movielens import resolve_dataset
    from movierec.data.store import open_store
    from movierec.errors import RejectRateExceededError

    settings = get_settings()
    try:
        store = open_store(settings)
        path = Path(source)
        if path.is_file():
            if kind not in FILE_KINDS:
                raise typer.BadParameter(f"--kind must be one of {', '.join(FILE_KINDS)}")
            summary = ingest_file(
                store,
                path,
                cast("FileKind", kind),
                fmt=None if kind == "events" else _file_format(kind, layout),
                dedup=settings.dedup_keep,
                chunk_bytes=settings.chunk_bytes,
                max_reject_rate=max_reject_rate,
                force=force,
            )
        else:
            folder = resolve_dataset(source, settings, data_dir)
            summary = ingest_release(
                store,
                folder,
                dedup=settings.dedup_keep,
                chunk_bytes=settings.chunk_bytes,
                max_reject_rate=max_reject_rate,
                force=force,
            )
    except RejectRateExceededError as e:
        raise _fail(e, 3) from e
    except MovierecError as e:
        raise _fail(e) from e
    t = Table(title="ingest")
    for col in ("table", "rows in", "before", "after", "inserted", "skipped"):
        t.add_column(col)
    for c in summary.counts:
        t.add_row(
            c.table,
            str(c.rows_in),
            str(c.rows_before),
            str(c.rows_after),
            str(c.inserted),
            "yes" if c.skipped else "",
        )
    out.print(t)
    for rep in summary.reports:
        if rep.reject_rows or rep.duplicate_rows:
            _print_report(rep)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(summary.to_dict(settings.max_rejects_in_report), indent=2))


@data_app.command("synth")
def data_synth(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the release into.")],
    ratings: Annotated[int, typer.Option(min=100, help="Exact number of ratings.")] = 1_000_000,
    users: Annotated[
        int | None, typer.Option(help="Number of users (default ~ratings/160).")
    ] = None,
    movies: Annotated[
        int | None, typer.Option(help="Number of movies (default grows with sqrt(ratings)).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
) -> None:
    """Generate a MovieLens-shaped synthetic release (ml-latest CSV layout)."""
    from movierec.data.synthetic import SynthConfig, generate

    config = SynthConfig(ratings=ratings, users=users, movies=movies, seed=seed)
    progress = Progress(
        TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )
    task = progress.add_task("ratings", total=ratings)
    try:
        with progress:
            counts = generate(out_dir, config, progress=lambda n: progress.advance(task, n))
    except ValueError as e:
        raise _fail(e) from e
    out.print(json.dumps(counts))


@data_app.command("stats")
def data_stats(
    dataset: DatasetOpt = "ml-latest-small",
    data_dir: DataDirOpt = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the statistics as JSON.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG: rating histogram and long tail.")
    ] = None,
) -> None:
    """Counts, density, rating histogram and popularity long tail of a release."""
    from movierec.data.movielens import load_release, resolve_dataset
    from movierec.data.stats import dataset_stats, plot_stats

    settings = get_settings()
    try:
        folder = resolve_dataset(dataset, settings, data_dir)
        rel = load_release(
            folder,
            kinds=("ratings", "movies", "tags"),
            chunk_bytes=settings.chunk_bytes,
            dedup=settings.dedup_keep,
        )
    except MovierecError as e:
        raise _fail(e) from e
    ratings = rel.tables["ratings"].table
    movies = rel.tables["movies"].table if "movies" in rel.tables else None
    tags = rel.tables["tags"].table if "tags" in rel.tables else None
    stats = {
        "dataset": dataset,
        "path": str(folder),
        "layout": rel.layout.name,
        **dataset_stats(ratings, movies, tags),
    }
    t = Table(title=f"{dataset} ({rel.layout.name} layout)")
    t.add_column("statistic")
    t.add_column("value", justify="right")
    for key in (
        "ratings",
        "users",
        "movies",
        "rated_movies",
        "tags",
        "density",
        "rating_mean",
        "top10pct_movies_share",
    ):
        v = stats[key]
        t.add_row(key, f"{v:,.4f}" if isinstance(v, float) else f"{v:,}")
    out.print(t)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(stats, indent=2))
    if plot is not None:
        plot_stats(ratings, stats, plot, dataset)
        out.print(f"plot: {plot}")


def _load_tables(dataset: str, data_dir: Path | None) -> tuple[Tables, Path]:
    from movierec.data.movielens import load_release, resolve_dataset
    from movierec.evaluation.runner import Tables

    settings = get_settings()
    folder = resolve_dataset(dataset, settings, data_dir)
    rel = load_release(
        folder,
        kinds=("ratings", "movies", "tags"),
        chunk_bytes=settings.chunk_bytes,
        dedup=settings.dedup_keep,
    )
    t = rel.tables
    tables = Tables(
        t["ratings"].table,
        t["movies"].table if "movies" in t else None,
        t["tags"].table if "tags" in t else None,
    )
    return tables, folder


@app.command("evaluate")
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
    params: Annotated[
        str | None, typer.Option(help='Config overrides as JSON: {"als": {"factors": 128}}.')
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write the results JSON here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG chart here.")] = None,
    ablation: Annotated[
        bool,
        typer.Option(
            help="Also evaluate `ranked` with each candidate source and each feature group "
            "removed (and the HistGradientBoosting baseline learner)."
        ),
    ] = False,
) -> None:
    """Train and evaluate models under one protocol; print a table and write JSON (and a plot)."""
    from movierec.evaluation.runner import (
        ablation_variants,
        comparison,
        plot_results,
        run_evaluation,
    )
    from movierec.evaluation.splits import PROTOCOLS
    from movierec.models.registry import MODELS

    if protocol not in PROTOCOLS:
        raise typer.BadParameter(f"unknown protocol {protocol!r}; use {', '.join(PROTOCOLS)}")
    names = (
        [m.strip() for m in models.split(",")]
        if models
        else (["mf"] if protocol == "kfold-rating" else list(MODELS))
    )
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise typer.BadParameter(
            f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}"
        )
    ks = sorted(set(k or [10, 20]))
    try:
        overrides = json.loads(params) if params else {}
        variants = ablation_variants(overrides.get("ranked")) if ablation else {}
        if ablation and "ranked" not in names:
            names.append("ranked")
        tables, _ = _load_tables(dataset, data_dir)
        steps = (len(names) + len(variants)) * seeds * (5 if protocol == "kfold-rating" else 1)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        task = progress.add_task("evaluate", total=steps)

        def step(label: str) -> None:
            progress.update(task, description=label)
            progress.advance(task)

        with progress:
            result = run_evaluation(
                tables,
                protocol,
                names,
                ks,
                seeds,
                overrides,
                relevance=relevance,
                dataset=dataset,
                progress=step,
                variants=variants,
            )
    except (MovierecError, ValueError) as e:
        raise _fail(e) from e
    if protocol != "kfold-rating" and "ranked" in result["models"] and len(result["models"]) > 1:
        result["comparison"] = comparison(result, "ranked")
    _print_results(result)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2))
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
        plot_results(result, plot)
        out.print(f"plot: {plot}")


def _print_results(result: dict[str, Any]) -> None:
    """Metrics as rows, models as columns (standard errors are in the JSON)."""
    models: dict[str, dict[str, float]] = result["models"]
    if result["protocol"] == "kfold-rating":
        metrics = ["rmse", "mae"]
    else:
        ks = result["k"]
        metrics = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
        metrics += [f"map@{ks[0]}", f"hit@{ks[0]}", f"coverage@{ks[-1]}"]
    t = Table(title=f"{result['dataset']} · {result['protocol']} · {result.get('seeds')} seed(s)")
    t.add_column("metric")
    for name in models:
        t.add_column(name, justify="right")
    for metric in metrics:
        t.add_row(metric, *[f"{vals.get(metric, float('nan')):.4f}" for vals in models.values()])
    out.print(t)
    cmp = result.get("comparison")
    if cmp:
        k0 = result["k"][0]
        d = Table(title="ranked minus each model (paired by seed, ± standard error)")
        d.add_column("model")
        for metric in (f"recall@{k0}", f"ndcg@{k0}"):
            d.add_column(metric, justify="right")
        for other, diffs in cmp["differences"].items():
            d.add_row(
                other,
                *[
                    f"{diffs[m]['diff']:+.4f} ± {diffs[m]['se']:.4f}"
                    for m in (f"recall@{k0}", f"ndcg@{k0}")
                ],
            )
        out.print(d)


@app.command("tune")
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
    from movierec.evaluation.tuning import SEARCH_SPACES, random_search

    if model not in SEARCH_SPACES:
        raise typer.BadParameter(f"unknown model {model!r}")
    ks = sorted({10, 20, int(metric.split("@")[1])}) if "@" in metric else [10]
    try:
        tables, _ = _load_tables(dataset, data_dir)
        progress = Progress(
            TextColumn("tune {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        task = progress.add_task(model, total=trials)
        with progress:
            result = random_search(
                model,
                tables,
                cast("Protocol", protocol),
                metric,
                trials,
                seed,
                ks,
                dataset,
                on_trial=lambda i, p, v: progress.advance(task),
            )
    except (MovierecError, ValueError, KeyError) as e:
        raise _fail(e) from e
    t = Table(title=f"tune {model} · {protocol} (validation) · {metric}")
    t.add_column("trial", justify="right")
    t.add_column("params")
    t.add_column(metric, justify="right")
    for i, tr in enumerate(result["trials"]):
        t.add_row(str(i), json.dumps(tr["params"]) or "defaults", f"{tr['value']:.4f}")
    out.print(t)
    out.print(f"best: {json.dumps(result['best'])}")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2))
    if track:
        from movierec.lifecycle.tracking import Tracker

        run_id = Tracker(get_settings()).log_tuning(result)
        out.print(f"logged to MLflow: run {run_id} (one child run per trial)")


@app.command("train")
def train(
    dataset: DatasetOpt = "ml-latest-small",
    data_dir: DataDirOpt = None,
    model: Annotated[str, typer.Option(help="Default strategy of the bundle.")] = "ease",
    strategies: Annotated[
        str, typer.Option(help="Comma-separated models to put in the bundle.")
    ] = "popularity,itemknn,als,ease,mf,ranked",
    params: Annotated[str | None, typer.Option(help="Config overrides as JSON.")] = None,
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
) -> None:
    """Train, evaluate, log to MLflow, register, promote if better, publish atomically."""
    from movierec.lifecycle.train import train_and_publish
    from movierec.models.registry import MODELS

    names = tuple(n.strip() for n in strategies.split(",") if n.strip())
    unknown = [n for n in (*names, model) if n not in MODELS]
    if unknown:
        raise typer.BadParameter(f"unknown model(s) {', '.join(unknown)}")
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    task = progress.add_task("train", total=len(set((*names, model))) + 3 + int(evaluate))

    def step(label: str) -> None:
        progress.update(task, description=label)
        progress.advance(task)

    try:
        with progress:
            result = train_and_publish(
                get_settings(),
                dataset,
                model,
                strategies=names,
                data_dir=data_dir,
                params=json.loads(params) if params else None,
                evaluate=evaluate,
                protocol=protocol,
                metric=metric,
                min_improve=min_improve,
                use_feedback=feedback,
                progress=step,
            )
    except (MovierecError, ValueError) as e:
        raise _fail(e) from e
    out.print(
        f"registered version {result.registered_version} (MLflow run {result.run_id}); "
        f"{'promoted' if result.promoted else 'NOT promoted'}: {result.decision.get('reason')}"
    )
    out.print(f"feedback merged: {result.feedback}")
    out.print(
        f"published {result.version} (default {result.default_strategy}; "
        f"strategies {', '.join(result.strategies)}) in {result.seconds:.1f} s"
    )
    if result.metrics:
        out.print(
            {
                k: round(v, 4)
                for k, v in result.metrics.items()
                if k in ("recall@10", "ndcg@10", "recall@20")
            }
        )


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
    access_log: Annotated[bool, typer.Option(help="JSON access log lines on stderr.")] = True,
) -> None:
    """Serve the current bundle over HTTP (OpenAPI docs at /docs)."""
    import uvicorn

    if access_log:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log = logging.getLogger("movierec.access")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    uvicorn.run(
        "movierec.service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
    )


@model_app.command("list")
def model_list() -> None:
    """Registered versions with their aliases, metric, protocol and bundle."""
    from movierec.lifecycle.bundle import current_version
    from movierec.lifecycle.tracking import Tracker

    settings = get_settings()
    versions = Tracker(settings).versions()
    if not versions:
        out.print("no registered versions yet (run `movierec train`)")
        return
    serving = current_version(settings.bundles_dir)
    t = Table(title=f"registered model {settings.registered_model}")
    for col in ("version", "aliases", "metric", "protocol", "bundle", "served", "run"):
        t.add_column(col, no_wrap=col in ("version", "aliases", "served"))
    for v in versions:
        value = "" if v.value is None else f"{v.metric} {v.value:.4f}"
        t.add_row(
            v.version,
            ",".join(v.aliases),
            value,
            v.protocol,
            v.bundle,
            "yes" if v.bundle == serving else "",
            v.run_id[:12],
        )
    out.print(t)


@model_app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="Registered version number to serve.")],
) -> None:
    """Make a version the champion and serve its bundle (the service reloads)."""
    from movierec.lifecycle.promotion import promote

    try:
        bundle = promote(get_settings(), version)
    except MovierecError as e:
        raise _fail(e) from e
    out.print(f"version {version} is the champion; serving bundle {bundle}")


@model_app.command("rollback")
def model_rollback() -> None:
    """Bring the previous champion back (the service reloads it)."""
    from movierec.lifecycle.promotion import rollback

    try:
        version, bundle = rollback(get_settings())
    except MovierecError as e:
        raise _fail(e) from e
    out.print(f"rolled back: version {version} is the champion; serving bundle {bundle}")


@app.command("scheduler")
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
            out.print(f"batch {b.name}: {b.status} (report {b.report})")
        if scan_only:
            raise typer.Exit(1 if any(b.status == "failed" for b in outcomes) else 0)
        result = sched.retrain()
        if result is None:
            raise typer.Exit(1)
        out.print(f"version {result.registered_version}: {result.decision.get('reason')}")
        return
    out.print(
        f"scheduler: retrain every {settings.train_interval} on {settings.train_dataset}; "
        f"drop batches in {sched.folders['landing']}; Ctrl-C stops"
    )
    sched.build(blocking=True, scan_every_s=scan_every).start()


@app.command("ui")
def ui(
    port: Annotated[int, typer.Option(help="Port of the web app.")] = 8501,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    api_url: Annotated[
        str | None, typer.Option(help="API base URL (default MOVIEREC_API_URL or :8000).")
    ] = None,
) -> None:
    """Start the Streamlit app (it talks to the API over HTTP only)."""
    import os
    import subprocess

    app_file = Path(__file__).with_name("ui") / "app.py"
    env = dict(os.environ)
    if api_url:
        env["MOVIEREC_API_URL"] = api_url
    env.setdefault("MOVIEREC_HOME", str(get_settings().home))
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app_file),
        "--server.port", str(port), "--server.address", host,
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    raise typer.Exit(subprocess.call(cmd, env=env))


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
