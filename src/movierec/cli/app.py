"""The ``movierec`` Typer application: command groups wired together, logging set up once."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from rich.logging import RichHandler

from movierec.cli import evaluate, experiments, lifecycle, serve
from movierec.cli.console import DEBUG, err
from movierec.cli.data import data_app
from movierec.cli.stream import stream_app
from movierec.redact import install_log_redaction
from movierec.settings import get_settings

app = typer.Typer(
    help="movierec: local-first movie recommendations (data, models, service).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(lifecycle.model_app, name="model")
app.add_typer(stream_app, name="stream")
app.add_typer(experiments.ab_app, name="ab")
app.command("evaluate")(evaluate.evaluate)
app.command("tune")(evaluate.tune)
app.command("report")(evaluate.report)
app.command("online-eval")(experiments.online_eval)
app.command("simulate")(experiments.simulate_cmd)
app.command("train")(lifecycle.train)
app.command("scheduler")(lifecycle.scheduler)
app.command("serve")(serve.serve)
app.command("ui")(serve.ui)


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an unexpected error.")
    ] = False,
) -> None:
    """Configure logging once for every command."""
    DEBUG["on"] = debug
    level = "DEBUG" if verbose else get_settings().log_level
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, markup=False)],
    )
    install_log_redaction()


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
