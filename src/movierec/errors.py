"""Typed errors of movierec (the service maps them to HTTP codes in one place)."""

from __future__ import annotations

from typing import Any


class MovierecError(Exception):
    """Base class of every error movierec raises on purpose."""


class InvalidDataError(MovierecError):
    """Input data that cannot be used: says which file, which line and why."""

    def __init__(self, reason: str, *, source: str | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.source = source
        self.line = line
        where = ""
        if source is not None:
            where = f"{source}"
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(f"{where}{reason}")


class RejectRateExceededError(InvalidDataError):
    """More rows were rejected than ``--max-reject-rate`` allows (``report`` says which)."""

    report: Any = None


class TrainingBusyError(MovierecError):
    """Another training holds this ``MOVIEREC_HOME`` (and the caller chose not to wait)."""


class DatasetUnavailableError(MovierecError):
    """A MovieLens release is neither on disk nor downloadable."""


class DownloadError(MovierecError):
    """A download failed or its archive did not verify (nothing was left behind)."""
