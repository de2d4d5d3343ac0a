"""Ingest: validate files and merge them into the store, with reports and counts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from movierec.data.dedup import DedupKeep
from movierec.data.events import parse_event_file, slug_index
from movierec.data.interactions import InteractionData
from movierec.data.movielens import LAYOUT_FILES, detect_layout, resolve_dataset
from movierec.data.report import ValidationReport
from movierec.data.schema import CSV_FORMATS, CSV_RATINGS, FileFormat
from movierec.data.store import IngestCounts, Store, open_store
from movierec.data.validate import validate_file
from movierec.hashing import file_digest
from movierec.resources import InsufficientMemoryError, available_bytes, fmt_bytes
from movierec.settings import Settings

logger = logging.getLogger(__name__)

FileKind = Literal["ratings", "movies", "links", "tags", "events"]
FILE_KINDS: tuple[FileKind, ...] = ("ratings", "movies", "links", "tags", "events")
ProgressFn = Callable[[int], None]
#: Peak bytes of an ingest per byte of its file: validation chunks, the validated table and its
#: deduplicated copy (measured: a 51 MB, 2M-row ratings file took 300 MB above the baseline).
INGEST_BYTES_PER_FILE_BYTE = 6


def check_read_fits(
    paths: Sequence[Path], held: int = 0, memory_limit: str | None = None, what: str = "reading"
) -> int:
    """Refuse files whose validation would not fit in memory, before reading them.

    Args:
        paths: The files to be validated.
        held: Bytes held besides them (the stored table a merge reads back).
        memory_limit: The ``memory_limit`` setting.
        what: The command, for the message.

    Returns:
        The bytes it will need.

    Raises:
        InsufficientMemoryError: With the file size that would fit.
    """
    size = sum(p.stat().st_size for p in paths)
    need = INGEST_BYTES_PER_FILE_BYTE * size + held
    avail = available_bytes(memory_limit)
    if need <= avail:
        return need
    fits = max(0, (avail - held) // INGEST_BYTES_PER_FILE_BYTE)
    names = ", ".join(p.name for p in paths)
    raise InsufficientMemoryError(
        f"{what} {names} ({fmt_bytes(size)}) would need about {fmt_bytes(need)} and "
        f"{fmt_bytes(avail)} is available; nothing was read. Files of up to about "
        f"{fmt_bytes(fits)} fit: split the ratings (split -l with the header repeated) and "
        "ingest the parts one after another (each merge is idempotent) into a SQL store "
        "(MOVIEREC_DATABASE_URL, merged in the database), or raise MOVIEREC_MEMORY_LIMIT."
    )


def file_format(kind: str, layout: str) -> FileFormat:
    """The raw format of a ``kind`` file in a release layout (``csv``, ``dat``, ``ml-100k``).

    Raises:
        ValueError: Unknown layout, or a layout without such a file.
    """
    if layout not in LAYOUT_FILES:
        raise ValueError(f"unknown format {layout!r}; use csv, dat or ml-100k")
    for _, fmt, _ in LAYOUT_FILES[layout]:
        if fmt.kind == kind:
            return fmt
    raise ValueError(f"format {layout} has no {kind} file")


def _file_kind(kind: str | None) -> FileKind:
    for k in FILE_KINDS:
        if k == kind:
            return k
    raise ValueError(f"--kind must be one of {', '.join(FILE_KINDS)}, not {kind!r}")


def validate_any(
    path: Path, kind: str, layout: str, settings: Settings, progress: ProgressFn | None = None
) -> ValidationReport:
    """Validate one file of any kind (event logs included) without storing it."""
    k = _file_kind(kind)
    if k == "events":
        rep = parse_event_file(path, dedup=settings.dedup_keep).report
        if progress is not None:
            progress(path.stat().st_size)
        return rep
    return validate_file(
        path,
        file_format(k, layout),
        chunk_bytes=settings.chunk_bytes,
        dedup=settings.dedup_keep,
        progress=progress,
    ).report


def ingest_source(
    source: str,
    settings: Settings,
    *,
    kind: str | None = None,
    layout: str = "csv",
    data_dir: Path | None = None,
    max_reject_rate: float | None = None,
    force: bool = False,
) -> IngestSummary:
    """Ingest one file (with its ``kind``) or a release (name or folder) into the store."""
    store = open_store(settings)
    path = Path(source)
    if path.is_file():
        k = _file_kind(kind)
        return ingest_file(
            store,
            path,
            k,
            fmt=None if k == "events" else file_format(k, layout),
            dedup=settings.dedup_keep,
            chunk_bytes=settings.chunk_bytes,
            max_reject_rate=max_reject_rate,
            force=force,
            memory_limit=settings.memory_limit,
        )
    return ingest_release(
        store,
        resolve_dataset(source, settings, data_dir),
        dedup=settings.dedup_keep,
        chunk_bytes=settings.chunk_bytes,
        max_reject_rate=max_reject_rate,
        force=force,
        memory_limit=settings.memory_limit,
    )


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
    memory_limit: str | None = None,
) -> IngestSummary:
    """Validate one file and merge its clean rows into the store.

    Event logs feed ``ratings`` (their rate events), ``watches`` and ``requests``; movie slugs
    are resolved through the stored movies table.

    Raises:
        RejectRateExceededError: More rows rejected than ``max_reject_rate``; nothing is merged.
        InsufficientMemoryError: The file would not fit in memory; nothing was read.
    """
    fmt = None if kind == "events" else fmt or CSV_FORMATS[kind]
    targets = ("ratings", "watches", "requests") if fmt is None else (fmt.kind,)
    held = max(store.merge_bytes(t) for t in targets)
    check_read_fits([path], held, memory_limit, "ingesting")
    digest = file_digest(path)
    summary = IngestSummary()
    if fmt is None:
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
    memory_limit: str | None = None,
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
            memory_limit=memory_limit,
        )
        summary.reports += part.reports
        summary.counts += part.counts
    return summary
