"""The one table loader: a release (name or folder) or the ingested store -> :class:`Tables`.

Every consumer of canonical tables (the CLI, ``train_and_publish``, ``evaluate``, ``tune``,
``stats``, the scheduler) reads them here, so a table added to the data layer (links, tags)
reaches all of them at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from movierec.data.ingest import check_read_fits
from movierec.data.movielens import detect_layout, load_release, resolve_dataset
from movierec.data.schema import TableKind
from movierec.data.store import open_store
from movierec.errors import MovierecError
from movierec.settings import Settings

#: The name that selects the ingested store instead of a release.
STORE = "store"
ALL_KINDS: tuple[TableKind, ...] = ("ratings", "movies", "tags", "links")


@dataclass(frozen=True)
class Tables:
    """Canonical tables of one data source.

    Attributes:
        ratings: ``user_id, movie_id, rating, timestamp`` (deduplicated).
        movies: ``movie_id, title, year, genres`` or ``None``.
        tags: ``user_id, movie_id, tag, timestamp`` or ``None``.
        links: ``movie_id, imdb_id, tmdb_id`` or ``None``.
        origin: The folder the tables came from, or ``store``.
        layout: Layout of the release (``csv``, ``dat``, ``ml-100k``) or ``store``.
    """

    ratings: pa.Table
    movies: pa.Table | None = None
    tags: pa.Table | None = None
    links: pa.Table | None = None
    origin: str = ""
    layout: str = ""

    def with_ratings(self, ratings: pa.Table) -> Tables:
        """The same tables with other ratings (e.g. with feedback merged in)."""
        return Tables(ratings, self.movies, self.tags, self.links, self.origin, self.layout)


def _nonempty(table: pa.Table | None) -> pa.Table | None:
    return table if table is not None and table.num_rows else None


def load_tables(
    source: str,
    settings: Settings,
    data_dir: Path | None = None,
    kinds: Sequence[TableKind] = ALL_KINDS,
) -> Tables:
    """Validated tables of a release (name or folder), or of the store (``source="store"``).

    Args:
        source: A release name (``ml-latest-small``), a folder holding one, or ``store``
            (what ``movierec data ingest`` and the batch folder flow wrote).
        settings: Where the store and the release cache live; chunk size and dedup rule.
        data_dir: Folder of releases (default ``MOVIEREC_DATA_DIR``).
        kinds: Tables to read besides ratings (always read).

    Raises:
        MovierecError: The store holds no ratings, or the release cannot be found or read.
    """
    wanted: tuple[TableKind, ...] = ("ratings", *(k for k in kinds if k != "ratings"))
    if source == STORE:
        store = open_store(settings)
        ratings = store.read("ratings")
        if not ratings.num_rows:
            raise MovierecError("the store holds no ratings: run `movierec data ingest` first")
        read = {k: _nonempty(store.read(k)) for k in wanted if k != "ratings"}
        return Tables(
            ratings, read.get("movies"), read.get("tags"), read.get("links"), STORE, STORE
        )
    folder = resolve_dataset(source, settings, data_dir)
    files = detect_layout(folder).files
    check_read_fits([files[k][0] for k in wanted if k in files], memory_limit=settings.memory_limit)
    rel = load_release(
        folder, kinds=wanted, chunk_bytes=settings.chunk_bytes, dedup=settings.dedup_keep
    )
    t = {k: v.table for k, v in rel.tables.items()}
    return Tables(
        t["ratings"],
        t.get("movies"),
        t.get("tags"),
        t.get("links"),
        str(folder),
        rel.layout.name,
    )
