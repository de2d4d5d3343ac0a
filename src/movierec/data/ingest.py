"""Ingest: validate files and merge them into the store, with reports and counts."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from movierec.data.events import parse_event_file, slug_index
from movierec.data.interactions import InteractionData
from movierec.data.movielens import detect_layout
from movierec.data.schema import CSV_FORMATS, CSV_RATINGS, FileFormat
from movierec.data.store import IngestCounts, Store
from movierec.data.validate import DedupKeep, ValidationReport, validate_file
from movierec.hashing import file_digest

logger = logging.getLogger(__name__)

FileKind = Literal["ratings", "movies", "links", "tags", "events"]


@dataclass
class IngestSummary:
    """Reports and table counts of one ingest command."""

    reports: list[ValidationReport] = field(default_factory=list)
    counts: list[IngestCounts] = field(default_factory=list)

    def to_dict(self, max_rejects: int | None = 100) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "reports": [r.to_dict(max_rejects) for r in self.reports],
            "tables": [c.to_dict() for c in self.counts],
        }


def ingest_file(
    store: Store,
    path: Path,
    kind: FileKind,
    *,
    fmt: FileFormat | None = None,
    dedup: DedupKeep = "latest",
    chunk_bytes: int = 64 * 1024 * 1024,
    max_reject_rate: float | None = None,
    force: bool = False,
) -> IngestSummary:
    """Validate one file and merge its clean rows into the store.

    Event logs feed ``ratings`` (their rate events), ``watches`` and ``requests``; movie slugs
    are resolved through the stored movies table.

    Raises:
        RejectRateExceededError: More rows rejected than ``max_reject_rate``; nothing is merged.
    """
    digest = file_digest(path)
    summary = IngestSummary()
    if kind == "events":
        movies = store.read("movies")
        log = parse_event_file(
            path, slugs=slug_index(movies) if movies.num_rows else None, dedup=dedup
        )
        log.report.check_rate(max_reject_rate)
        summary.reports.append(log.report)
        for name, table in (
            ("ratings", log.ratings),
            ("watches", log.watches),
            ("requests", log.requests),
        ):
            summary.counts.append(
                store.ingest(name, table, source=str(path), digest=digest, force=force)
            )
        return summary
    fmt = fmt or CSV_FORMATS[kind]
    validated = validate_file(path, fmt, chunk_bytes=chunk_bytes, dedup=dedup)
    validated.report.check_rate(max_reject_rate)
    summary.reports.append(validated.report)
    summary.counts.append(
        store.ingest(fmt.kind, validated.table, source=str(path), digest=digest, force=force)
    )
    return summary


def ingest_and_load(
    store: Store,
    path: Path,
    *,
    fmt: FileFormat = CSV_RATINGS,
    dedup: DedupKeep = "latest",
    chunk_bytes: int = 64 * 1024 * 1024,
    max_reject_rate: float | None = None,
    force: bool = False,
) -> tuple[IngestSummary, InteractionData]:
    """Ingest a ratings file into the store and build its :class:`InteractionData` at once.

    The file digest is computed while the file is validated, and the store write overlaps
    with building the CSR matrix (both release the GIL), so this costs little more than
    validation alone.

    Raises:
        RejectRateExceededError: More rows rejected than ``max_reject_rate``; nothing is merged.
    """
    if fmt.kind != "ratings":
        raise ValueError("ingest_and_load takes a ratings file")
    summary = IngestSummary()
    with ThreadPoolExecutor(max_workers=2) as pool:
        digest = pool.submit(file_digest, path)
        validated = validate_file(path, fmt, chunk_bytes=chunk_bytes, dedup=dedup)
        validated.report.check_rate(max_reject_rate)
        summary.reports.append(validated.report)
        data = pool.submit(InteractionData.from_table, validated.table)
        summary.counts.append(
            store.ingest(
                "ratings", validated.table, source=str(path), digest=digest.result(), force=force
            )
        )
        return summary, data.result()


def ingest_release(
    store: Store,
    folder: Path,
    *,
    dedup: DedupKeep = "latest",
    chunk_bytes: int = 64 * 1024 * 1024,
    max_reject_rate: float | None = None,
    force: bool = False,
) -> IngestSummary:
    """Ingest every file of a MovieLens release folder (any official layout)."""
    layout = detect_layout(folder)
    summary = IngestSummary()
    # movies first, so that later event logs can resolve slugs
    order = ("movies", "links", "tags", "ratings")
    for kind in order:
        if kind not in layout.files:
            continue
        path, fmt = layout.files[kind]
        part = ingest_file(
            store,
            path,
            kind,
            fmt=fmt,
            dedup=dedup,
            chunk_bytes=chunk_bytes,
            max_reject_rate=max_reject_rate,
            force=force,
        )
        summary.reports += part.reports
        summary.counts += part.counts
    return summary
