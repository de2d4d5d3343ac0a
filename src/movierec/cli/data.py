"""``movierec data``: fetch, validate, ingest, synth, stats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from movierec.cli.console import errors, print_report, progress, say, table, write_json
from movierec.cli.options import DataDirOpt, DatasetOpt, FormatOpt
from movierec.settings import get_settings

data_app = typer.Typer(
    help="Fetch, validate, ingest, generate and describe data.", no_args_is_help=True
)
KindOpt = Annotated[str, typer.Option("--kind", help="ratings | movies | links | tags | events")]


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
    from movierec.data.ingest import validate_any

    settings = get_settings()
    with errors(), progress("validating", file.stat().st_size, "bytes") as advance:
        rep = validate_any(file, kind, layout, settings, progress=advance)
    if report is not None or rejects is not None:
        reject_path = rejects or (report.with_suffix(".rejects.jsonl") if report else None)
        if reject_path is not None:
            rep.write_rejects(reject_path)
        if report is not None:
            rep.write(report, settings.max_rejects_in_report)
    print_report(rep)
    with errors():
        rep.check_rate(max_reject_rate)


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="Release: ml-latest-small, ml-100k, ml-1m, ...")],
) -> None:
    """Download, verify (MD5 + zip CRC) and unpack an official release into the cache."""
    from movierec.data.movielens import fetch_release

    with errors(), progress(name, None, "bytes") as advance:
        path = fetch_release(
            name,
            get_settings(),
            progress=lambda done, total: advance(0, total=total, completed=done),
        )
    say(f"{name}: {path}")


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
    from movierec.data.ingest import ingest_source

    settings = get_settings()
    with errors():
        summary = ingest_source(
            source,
            settings,
            kind=kind,
            layout=layout,
            data_dir=data_dir,
            max_reject_rate=max_reject_rate,
            force=force,
        )
    table(
        "ingest",
        ("table", "rows in", "before", "after", "inserted", "skipped"),
        [
            (
                c.table,
                c.rows_in,
                c.rows_before,
                c.rows_after,
                c.inserted,
                "yes" if c.skipped else "",
            )
            for c in summary.counts
        ],
        right=False,
    )
    for rep in summary.reports:
        if rep.reject_rows or rep.duplicate_rows:
            print_report(rep)
    write_json(report, summary.to_dict(settings.max_rejects_in_report))


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
    import json

    from movierec.data.synthetic import SynthConfig, generate

    config = SynthConfig(ratings=ratings, users=users, movies=movies, seed=seed)
    with errors(), progress("synth", ratings) as advance:
        counts = generate(out_dir, config, progress=advance)
    say(json.dumps(counts))


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
    from movierec.data.stats import STAT_ROWS, describe, plot_stats
    from movierec.data.tables import load_tables

    with errors():
        tables = load_tables(dataset, get_settings(), data_dir, kinds=("movies", "tags"))
        stats = describe(tables, dataset)
    table(
        f"{dataset} ({tables.layout} layout)",
        ("statistic", "value"),
        [
            (key, f"{v:,.4f}" if isinstance(v := stats[key], float) else f"{v:,}")
            for key in STAT_ROWS
        ],
    )
    write_json(json_out, stats)
    if plot is not None:
        plot_stats(tables.ratings, stats, plot, dataset)
        say(f"plot: {plot}")


def _epoch(text: str | None) -> int | None:
    """Seconds since the epoch from digits or an ISO date/time (UTC)."""
    if text is None:
        return None
    from datetime import UTC, datetime

    if text.isdigit():
        return int(text)
    when = datetime.fromisoformat(text)
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


@data_app.command("drift")
def data_drift(
    cur: Annotated[str, typer.Option(help="Current snapshot: release, folder or `store`.")],
    ref: Annotated[
        str | None, typer.Option(help="Reference snapshot (none: a descriptive report).")
    ] = None,
    ref_until: Annotated[
        str | None, typer.Option(help="Only reference events before this time (ISO or epoch).")
    ] = None,
    cur_since: Annotated[
        str | None, typer.Option(help="Only current events from this time (ISO or epoch).")
    ] = None,
    data_dir: DataDirOpt = None,
    cur_report: Annotated[
        Path | None,
        typer.Option(help="Validation report JSON of the current data (for its reject rate)."),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the drift report JSON.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of the drift.")] = None,
    fail_on: Annotated[
        str | None, typer.Option(help="Exit 4 when drift is at least: moderate | strong.")
    ] = None,
) -> None:
    """Drift between two snapshots: rating PSI, activity KS, top-100 overlap, Gini, new ids."""
    import json

    import pyarrow.compute as pc

    from movierec.cli.console import fail, write_plot
    from movierec.data.drift import LEVELS, at_or_above, compare, plot_drift
    from movierec.data.tables import load_tables
    from movierec.lifecycle.drift_gate import thresholds

    if fail_on is not None and fail_on not in LEVELS[1:]:
        raise typer.BadParameter("--fail-on takes moderate or strong")
    s = get_settings()
    with errors():
        cur_t = load_tables(cur, s, data_dir).ratings
        if (since := _epoch(cur_since)) is not None:
            cur_t = cur_t.filter(pc.greater_equal(cur_t["timestamp"], since))
        ref_t = None
        if ref is not None:
            ref_t = load_tables(ref, s, data_dir).ratings
            if (until := _epoch(ref_until)) is not None:
                ref_t = ref_t.filter(pc.less(ref_t["timestamp"], until))
        reject_rate = None
        if cur_report is not None:
            rep = json.loads(cur_report.read_text())
            if rep.get("input_rows"):
                reject_rate = rep.get("reject_rows", 0) / rep["input_rows"]
        result = compare(ref_t, cur_t, thresholds(s), reject_rate)
    vals = result.get("values") or {}
    table(
        f"drift: {result['level']}" + ("" if ref else " (no reference: description only)"),
        ("indicator", "value"),
        [(k, f"{v:.4f}") for k, v in vals.items()]
        + [(f"current {k}", str(v)) for k, v in result["current"].items() if k != "rating_share"],
    )
    write_json(report, result)
    write_plot(plot, lambda path: plot_drift(result, path))
    if fail_on is not None and at_or_above(result["level"], fail_on):
        raise fail(f"drift is {result['level']} (--fail-on {fail_on})", 4)
