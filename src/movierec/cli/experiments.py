"""``movierec online-eval``, ``movierec ab report|watch`` and ``movierec simulate``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from movierec.cli.console import errors, say, table, write_json, write_plot
from movierec.settings import Settings, get_settings

ab_app = typer.Typer(help="A/B tests: report and guardrail.", no_args_is_help=True)
WindowOpt = Annotated[str, typer.Option(help="Attribution window: seconds or 30m / 1h / 1d.")]


def load_online(settings: Settings, window: str) -> dict[str, Any]:
    """Served lists and watches from the store, evaluated (see :mod:`experiments.online`)."""
    from movierec.data.feedback import FeedbackStore
    from movierec.experiments.online import online_from_store
    from movierec.settings import parse_interval

    store = FeedbackStore.for_settings(
        settings.home, settings.reveal(settings.database_url), overlay=False
    )
    try:
        return online_from_store(store, parse_interval(window))
    finally:
        store.close()


def offline_beside_online(settings: Settings, online: dict[str, Any]) -> list[dict[str, Any]]:
    """Per registered model version served online: its offline metric and its online WTR."""
    from movierec.lifecycle.tracking import Tracker

    rows: list[dict[str, Any]] = []
    try:
        versions = Tracker(settings).versions()
    except Exception:
        return rows
    for v in versions:
        got = online["variants"].get(v.bundle)
        if got is None:
            continue
        rows.append(
            {
                "registered_version": v.version,
                "bundle": v.bundle,
                "offline_metric": v.metric,
                "offline_value": v.value,
                "online_lists": got["lists"],
                "online_wtr": got["wtr"],
                "online_ci": got["ci"],
            }
        )
    return rows


def online_eval(
    window: WindowOpt = "1h",
    report: Annotated[Path | None, typer.Option(help="Write the evaluation JSON.")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG: WTR per variant, over time.")
    ] = None,
) -> None:
    """Watch-through rate of served lists per model version / variant, with 95% intervals."""
    from movierec.experiments.plots import plot_online

    s = get_settings()
    with errors():
        online = load_online(s, window)
        online["offline_vs_online"] = offline_beside_online(s, online)
    table(
        f"online evaluation (window {window})",
        ("served by", "lists", "conversions", "WTR", "95% CI", "mean hit position"),
        [
            (
                name,
                f"{v['lists']:,}",
                f"{v['conversions']:,}",
                f"{v['wtr']:.4f}",
                f"{v['ci'][0]:.4f}–{v['ci'][1]:.4f}",
                "-" if v["mean_hit_position"] is None else f"{v['mean_hit_position']:.2f}",
            )
            for name, v in online["variants"].items()
        ],
    )
    if online["offline_vs_online"]:
        table(
            "offline vs online per model version",
            ("version", "bundle", "offline", "online WTR"),
            [
                (
                    r["registered_version"],
                    r["bundle"],
                    f"{r['offline_metric']} {r['offline_value'] or float('nan'):.4f}",
                    f"{r['online_wtr']:.4f}",
                )
                for r in online["offline_vs_online"]
            ],
        )
    write_json(report, online)
    write_plot(plot, lambda path: plot_online(online, path))


def _experiment(s: Settings, path: Path | None) -> Any:
    from movierec.experiments.design import read_experiment

    exp = read_experiment(path or s.experiments_path)
    if exp is None:
        raise ValueError(f"no experiment at {path or s.experiments_path}")
    return exp


def print_ab(rep: dict[str, Any]) -> None:
    """The A/B table and the verdict lines."""
    table(
        f"A/B test {rep['experiment']} (control: {rep['control']})",
        ("variant", "weight", "lists", "WTR", "95% CI", "diff", "p", "always-valid p", "verdict"),
        [
            (
                r["variant"],
                f"{r['weight']:g}",
                f"{r['lists']:,}",
                f"{r['wtr']:.4f}",
                f"{r['ci'][0]:.4f}–{r['ci'][1]:.4f}",
                f"{r['diff']:+.4f}" if "diff" in r else "",
                f"{r['p']:.4f}" if "p" in r else "",
                f"{r['always_valid_p']:.4f}" if "always_valid_p" in r else "",
                r.get("verdict", "control"),
            )
            for r in rep["variants"]
        ],
    )
    srm = rep["srm"]
    say(
        f"sample ratio: counts {srm['counts']}, chi2 {srm['chi2']:.2f}, p {srm['p']:.4f}"
        + (" — SAMPLE RATIO MISMATCH: do not trust this test" if srm["mismatch"] else "")
    )
    say(f"winner: {rep['winner'] or 'none yet'}")


@ab_app.command("report")
def ab_report_cmd(
    window: WindowOpt = "1h",
    experiments: Annotated[Path | None, typer.Option(help="Experiment file.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the report JSON.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG.")] = None,
    final: Annotated[
        bool, typer.Option(help="The planned end is reached: the fixed-horizon test decides.")
    ] = False,
) -> None:
    """Per-variant WTR with intervals, z-test, always-valid p, sample-ratio check, verdict."""
    from movierec.experiments.online import ab_report
    from movierec.experiments.plots import plot_online

    s = get_settings()
    with errors():
        exp = _experiment(s, experiments)
        online = load_online(s, window)
        rep = ab_report(online, exp, final=final)
        rep["interleaving"] = online["interleaving"].get(exp.name)
    print_ab(rep)
    write_json(report, rep | {"online": online})
    write_plot(plot, lambda path: plot_online(online, path, f"A/B test {exp.name}"))


@ab_app.command("watch")
def ab_watch(
    window: WindowOpt = "1h",
    experiments: Annotated[Path | None, typer.Option(help="Experiment file.")] = None,
    wtr_floor: Annotated[
        float, typer.Option(help="A variant whose WTR interval is all below this stops.")
    ] = 0.0,
    every: Annotated[float, typer.Option(help="Seconds between looks.")] = 3600.0,
    once: Annotated[bool, typer.Option(help="Look once and exit.")] = False,
) -> None:
    """Guardrail: a variant significantly worse than control, or under the floor, gets weight 0."""
    from movierec.experiments.design import write_experiment
    from movierec.experiments.online import ab_report

    s = get_settings()
    path = experiments or s.experiments_path
    while True:
        with errors():
            exp = _experiment(s, path)
            rep = ab_report(load_online(s, window), exp)
            for r in rep["variants"][1:]:
                worse = r.get("verdict") == "worse than control"
                floor = r["lists"] > 0 and r["ci"][1] < wtr_floor
                if (worse or floor) and r["weight"] > 0:
                    exp = exp.with_weight(r["variant"], 0.0)
                    write_experiment(path, exp)
                    why = "worse than control" if worse else f"WTR below {wtr_floor}"
                    say(f"stopped {r['variant']}: {why} (weight 0; the service follows)")
        print_ab(rep)
        if once:
            return
        time.sleep(every)


def simulate_cmd(
    dataset: Annotated[
        str, typer.Option(help="Release whose users are simulated.")
    ] = "ml-latest-small",
    control: Annotated[str, typer.Option(help="Control strategy.")] = "popularity",
    treatment: Annotated[str, typer.Option(help="Treatment strategy.")] = "ranked",
    requests: Annotated[int, typer.Option(min=10, help="Requests per experiment.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap (default: start a Tansu broker).")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write the results JSON.")] = None,
) -> None:
    """Simulated users with a known future drive the real API and stream: A/B, A/A, interleaving."""
    from movierec.experiments.simulation import SimPlan, run_simulation

    plan = SimPlan(dataset, control, treatment, requests, seed)
    with errors():
        out = run_simulation(plan, get_settings(), bootstrap)
    rows = []
    for key in ("ab", "aa"):
        for r in out[key]["report"]["variants"]:
            rows.append(
                (
                    key,
                    r["variant"],
                    f"{r['lists']:,}",
                    f"{r['wtr']:.4f}",
                    f"{r.get('always_valid_p', float('nan')):.4f}",
                    r.get("verdict", "control"),
                )
            )
    table(
        "simulation: per-variant WTR",
        ("run", "variant", "lists", "WTR", "always-valid p", "verdict"),
        rows,
    )
    for key, text in out["verdicts"].items():
        say(f"{key}: {text}")
    fpr = out["aa"]["false_positive_rate"]
    say(
        f"A/A false-positive rate over {fpr['salts']} re-randomisations: "
        f"{fpr['rate']:.3f} (nominal 0.05)"
    )
    write_json(output, out)
