"""Console helpers shared by every command: one error exit, one progress bar, tables, JSON.

Commands are glue: arguments in, one library call inside :func:`errors`, output out. Text from
data (file names, reasons, titles) is never read as rich markup.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import typer
from rich.console import Console
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

from movierec.data.report import ValidationReport
from movierec.errors import MovierecError, RejectRateExceededError

err = Console(stderr=True, emoji=False, highlight=False)
out = Console(emoji=False, highlight=False)
logger = logging.getLogger("movierec.cli")

#: Exit codes: 2 for errors of input, data or state; 3 when a reject rate was exceeded.
EXIT_ERROR = 2
EXIT_REJECT_RATE = 3
#: Whether ``--debug`` was given (errors then show their traceback).
DEBUG = {"on": False}


def fail(message: object, code: int = EXIT_ERROR) -> typer.Exit:
    """Print one error line (never interpreted as markup) and return the exit to raise."""
    err.print(f"[bold red]error:[/] {escape(str(message))}", soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """Turn any error of the library into one line on stderr and an exit code.

    ``RejectRateExceededError`` exits 3, every other error 2; an unexpected exception prints
    its type and message (its traceback only with ``--debug``).
    """
    try:
        yield
    except (typer.Exit, typer.Abort, typer.BadParameter, KeyboardInterrupt):
        raise
    except RejectRateExceededError as e:
        raise fail(e, EXIT_REJECT_RATE) from e
    except (MovierecError, ValueError, KeyError, OSError) as e:
        if DEBUG["on"]:
            raise
        raise fail(e.args[0] if isinstance(e, KeyError) and e.args else e) from e
    except Exception as e:
        if DEBUG["on"]:
            raise
        logger.debug("unexpected error", exc_info=True)
        raise fail(f"{type(e).__name__}: {e} (run with --debug for the traceback)") from e


Advance = Callable[..., None]


@contextmanager
def progress(
    label: str, total: int | None, unit: Literal["steps", "bytes"] = "steps"
) -> Iterator[Advance]:
    """A transient progress bar on stderr; yields ``advance(n, description, total, completed)``.

    Hidden when stderr is not a terminal (logs and tests stay clean).
    """
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
    if unit == "bytes":
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns.append(MofNCompleteColumn())
    columns.append(TimeElapsedColumn())
    bar = Progress(*columns, console=err, transient=True, disable=not err.is_terminal)
    task = bar.add_task(escape(label), total=total)

    def advance(
        n: int = 1,
        description: str | None = None,
        total: int | None = None,
        completed: int | None = None,
    ) -> None:
        if description is not None:
            bar.update(task, description=escape(description))
        if total is not None:
            bar.update(task, total=total)
        if completed is not None:
            bar.update(task, completed=completed)
        bar.advance(task, n)

    with bar:
        yield advance


def step_progress(advance: Advance) -> Callable[[str], None]:
    """A library ``progress(label)`` callback that advances the bar by one step."""
    return lambda label: advance(1, description=label)


def table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    right: bool = True,
    no_wrap: Sequence[str] = (),
) -> None:
    """Print a table; cells are plain text (never markup); numbers right-aligned.

    Columns named in ``no_wrap`` keep their cells on one line.
    """
    t = Table(title=escape(title))
    for i, col in enumerate(columns):
        t.add_column(
            escape(col), justify="right" if right and i else "left", no_wrap=col in no_wrap
        )
    for row in rows:
        t.add_row(*(escape(str(c)) for c in row))
    out.print(t)


def say(text: str) -> None:
    """Print a line of plain text (never markup)."""
    out.print(escape(text), soft_wrap=True)


def write_json(path: Path | None, payload: Any) -> None:
    """Write ``payload`` as indented JSON, creating the folder (nothing when ``path`` is None)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))


def write_plot(path: Path | None, draw: Callable[[Path], None]) -> None:
    """Draw a chart into ``path`` (creating the folder) and say where (nothing when None)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    draw(path)
    say(f"plot: {path}")


def print_report(rep: ValidationReport) -> None:
    """A validation report: counts, then the first ten rejects with line, field and reason."""
    table(
        f"{rep.source} ({rep.kind})",
        ("input", "clean", "rejected", "duplicates", "reject rate"),
        [
            (
                rep.input_rows,
                rep.clean_rows,
                rep.reject_rows,
                rep.duplicate_rows,
                f"{rep.reject_rate:.3%}",
            )
        ],
    )
    for r in rep.rejects[:10]:
        say(f"  line {r.line}: [{r.field}] {r.reason}")
    if len(rep.rejects) > 10:
        say(f"  ... and {len(rep.rejects) - 10} more")
