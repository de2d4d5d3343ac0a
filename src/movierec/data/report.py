"""Validation reports: every rejected row with its source, line, field and reason."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from movierec.errors import RejectRateExceededError


@dataclass(frozen=True)
class Reject:
    """One rejected row."""

    source: str
    line: int
    field: str
    reason: str
    raw: str

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form of the reject."""
        return {
            "source": self.source,
            "line": self.line,
            "field": self.field,
            "reason": self.reason,
            "raw": self.raw,
        }


@dataclass
class ValidationReport:
    """Counts and rejects of one validated file.

    ``clean_rows = input_rows - reject_rows - duplicate_rows``; ``reject_rate`` is
    ``reject_rows / input_rows``. Duplicates are valid rows superseded by the dedup rule.
    """

    source: str
    kind: str
    input_rows: int = 0
    clean_rows: int = 0
    reject_rows: int = 0
    duplicate_rows: int = 0
    dedup_rule: str = ""
    rejects: list[Reject] = field(default_factory=list)
    reject_file: str | None = None

    @property
    def reject_rate(self) -> float:
        """Fraction of input rows rejected (0 for an empty file)."""
        return self.reject_rows / self.input_rows if self.input_rows else 0.0

    def to_dict(self, max_rejects: int | None = None) -> dict[str, Any]:
        """Return the JSON report (at most ``max_rejects`` rejects listed)."""
        listed = self.rejects if max_rejects is None else self.rejects[:max_rejects]
        return {
            "source": self.source,
            "kind": self.kind,
            "input_rows": self.input_rows,
            "clean_rows": self.clean_rows,
            "reject_rows": self.reject_rows,
            "reject_rate": self.reject_rate,
            "duplicate_rows": self.duplicate_rows,
            "dedup_rule": self.dedup_rule,
            "reject_file": self.reject_file,
            "rejects_listed": len(listed),
            "rejects": [r.to_dict() for r in listed],
        }

    def write(self, path: Path, max_rejects: int | None = None) -> None:
        """Write the JSON report to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(max_rejects), indent=2))

    def write_rejects(self, path: Path) -> None:
        """Write every reject (one JSON object a line) to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for r in self.rejects:
                f.write(json.dumps(r.to_dict()) + "\n")
        self.reject_file = str(path)

    def check_rate(self, max_reject_rate: float | None) -> None:
        """Raise :class:`RejectRateExceededError` when the reject rate is above the limit."""
        if max_reject_rate is not None and self.reject_rate > max_reject_rate:
            err = RejectRateExceededError(
                f"{self.reject_rows} of {self.input_rows} rows rejected "
                f"({self.reject_rate:.2%}), above --max-reject-rate {max_reject_rate:.2%}",
                source=self.source,
            )
            err.report = self
            raise err
