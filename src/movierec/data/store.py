"""The interaction store: embedded Parquet + DuckDB by default, PostgreSQL / MySQL via SQLAlchemy.

Both backends hold the same tables with the same keys and the same merge rule, so an ingest
is idempotent: ingesting a file twice leaves the tables as after the first time.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from movierec.data.dedup import dedup_order
from movierec.data.events import REQUESTS_SCHEMA, WATCHES_SCHEMA
from movierec.data.keys import key_codes, strictly_increasing_pairs
from movierec.data.schema import CANONICAL
from movierec.data.sqlutil import create_tables
from movierec.settings import Settings

logger = logging.getLogger(__name__)

#: Every stored table: schema, key columns, and the column that orders "latest" (or None).
TABLES: dict[str, tuple[pa.Schema, tuple[str, ...], str | None]] = {
    "ratings": (CANONICAL["ratings"], ("user_id", "movie_id"), "timestamp"),
    "movies": (CANONICAL["movies"], ("movie_id",), None),
    "links": (CANONICAL["links"], ("movie_id",), None),
    "tags": (CANONICAL["tags"], ("user_id", "movie_id", "tag", "timestamp"), None),
    "watches": (WATCHES_SCHEMA, ("user_id", "movie_id", "minute"), "timestamp"),
    "requests": (REQUESTS_SCHEMA, ("user_id", "timestamp"), None),
}


@dataclass(frozen=True)
class IngestCounts:
    """What one ingest did to one table."""

    table: str
    source: str
    rows_in: int
    rows_before: int
    rows_after: int
    skipped: bool = False

    @property
    def inserted(self) -> int:
        """New keys added."""
        return self.rows_after - self.rows_before

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        changed = self.rows_in - self.inserted if not self.skipped else 0
        return {**asdict(self), "inserted": self.inserted, "updated_or_unchanged": changed}


def merge_tables(name: str, old: pa.Table | None, new: pa.Table) -> pa.Table:
    """Merge ``new`` into ``old`` with the table's key: the latest (or the newer row) wins."""
    schema, keys, order_col = TABLES[name]
    new = new.select(schema.names).cast(schema)
    both = new if old is None or old.num_rows == 0 else pa.concat_tables([old.cast(schema), new])
    if both.num_rows < 2:
        return both
    if len(keys) == 2 and strictly_increasing_pairs(
        both[keys[0]].to_numpy(), both[keys[1]].to_numpy()
    ):
        return both  # sorted and unique already: the common case of a first MovieLens ingest
    codes = key_codes(both, keys)
    ts = both[order_col].to_numpy() if order_col else None
    kept, _, _ = dedup_order(codes, ts, np.arange(both.num_rows, dtype=np.int64), "latest")
    out = both.take(kept) if kept.size != both.num_rows else both
    if keys == ("user_id", "movie_id"):
        c = codes[kept]
        if c.size > 1 and not bool(np.all(c[1:] > c[:-1])):
            out = out.take(np.argsort(c, kind="stable"))
    else:
        out = out.take(pc.sort_indices(out, sort_keys=[(k, "ascending") for k in keys]))
    return out


#: Peak bytes a Parquet merge holds per stored row (2M new ratings into 2M stored: +200 MB).
MERGE_BYTES_PER_ROW = 100


class Store(ABC):
    """Where validated tables live."""

    @abstractmethod
    def read(self, name: str) -> pa.Table:
        """Return a whole table (empty with its schema when never written)."""

    @abstractmethod
    def _merge(self, name: str, table: pa.Table) -> tuple[int, int]:
        """Merge rows into a table; return (rows before, rows after)."""

    @abstractmethod
    def _ingested(self, digest: str, name: str) -> bool:
        """Whether a file with this digest was already ingested into ``name``."""

    @abstractmethod
    def _record(self, digest: str, name: str, source: str, rows: int) -> None:
        """Remember an ingest."""

    @abstractmethod
    def count(self, name: str) -> int:
        """Rows in a table."""

    def ingest(
        self,
        name: str,
        table: pa.Table,
        *,
        source: str,
        digest: str | None = None,
        force: bool = False,
    ) -> IngestCounts:
        """Merge validated rows into a table, idempotently.

        Args:
            name: Table name (see :data:`TABLES`).
            table: Rows in the table's schema.
            source: Where the rows came from (file path), for the ingest log.
            digest: Content hash of the source file; a digest seen before is skipped.
            force: Merge even when the digest was seen (still idempotent by key).
        """
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}")
        seen = digest is not None and self._ingested(digest, name)
        if seen and not force:
            n = self.count(name)
            logger.info("%s already ingested into %s: skipped", source, name)
            return IngestCounts(name, source, table.num_rows, n, n, skipped=True)
        before, after = self._merge(name, table)
        if digest is not None and not seen:
            self._record(digest, name, source, table.num_rows)
        return IngestCounts(name, source, table.num_rows, before, after)

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return {name: self.count(name) for name in TABLES}

    def merge_bytes(self, name: str) -> int:
        """Memory a merge into ``name`` holds for the rows already stored (0: merged in place)."""
        return 0


class ParquetStore(Store):
    """One Parquet file per table under a folder, queried with DuckDB.

    Writes go to a temporary file that is fsynced and renamed over the old one, so a crash
    leaves either the old or the new table, never a half-written one.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._log = self.root / "ingests.jsonl"

    def path(self, name: str) -> Path:
        """The Parquet file of a table."""
        return self.root / f"{name}.parquet"

    def read(self, name: str) -> pa.Table:
        """Return a whole table."""
        p = self.path(name)
        if not p.exists():
            return TABLES[name][0].empty_table()
        return pq.read_table(p).cast(TABLES[name][0])

    def count(self, name: str) -> int:
        """Rows in a table (from the Parquet footer)."""
        p = self.path(name)
        return pq.ParquetFile(p).metadata.num_rows if p.exists() else 0

    def _write(self, name: str, table: pa.Table) -> None:
        tmp = self.root / f".{name}.{uuid.uuid4().hex[:8]}.parquet"
        try:
            # snappy without dictionaries on id/number columns: about 2x faster to write than
            # zstd with dictionaries, for a file about 20% larger
            dict_cols = [f.name for f in table.schema if not pa.types.is_integer(f.type)]
            pq.write_table(
                table, tmp, compression="snappy", use_dictionary=dict_cols, row_group_size=1 << 20
            )
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path(name))
        finally:
            tmp.unlink(missing_ok=True)

    def _merge(self, name: str, table: pa.Table) -> tuple[int, int]:
        old = self.read(name) if self.path(name).exists() else None
        before = old.num_rows if old is not None else 0
        merged = merge_tables(name, old, table)
        self._write(name, merged)
        return before, merged.num_rows

    def merge_bytes(self, name: str) -> int:
        """The stored table read back, concatenated, sorted and deduplicated."""
        return self.count(name) * MERGE_BYTES_PER_ROW

    def _entries(self) -> list[dict[str, Any]]:
        if not self._log.exists():
            return []
        return [json.loads(x) for x in self._log.read_text().splitlines() if x.strip()]

    def _ingested(self, digest: str, name: str) -> bool:
        return any(e["digest"] == digest and e["table"] == name for e in self._entries())

    def _record(self, digest: str, name: str, source: str, rows: int) -> None:
        entry = {"digest": digest, "table": name, "source": source, "rows": rows, "at": time.time()}
        with self._log.open("a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    @contextmanager
    def duckdb(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection with one view per stored table."""
        con = duckdb.connect()
        try:
            for name in TABLES:
                p = self.path(name)
                if p.exists():  # no SQL text: the path is an argument, never quoted into SQL
                    con.read_parquet(str(p)).create_view(name)
            yield con
        finally:
            con.close()


def _sa_type(t: pa.DataType) -> sa.types.TypeEngine[Any]:
    if t == pa.int16():
        return sa.SmallInteger()
    if t == pa.int32():
        return sa.Integer()
    if t == pa.int64():
        return sa.BigInteger()
    if pa.types.is_floating(t):
        return sa.Float()
    return sa.String(512)


class SqlStore(Store):
    """The same tables in PostgreSQL or MySQL/MariaDB (or SQLite) through SQLAlchemy Core.

    List columns (``movies.genres``) are stored ``|``-joined. Merges are native upserts:
    ``ON CONFLICT DO UPDATE`` (PostgreSQL, SQLite) or ``ON DUPLICATE KEY UPDATE`` (MySQL),
    updating a row only when the incoming one is at least as recent.
    """

    BATCH = 5000

    def __init__(self, url: str, prefix: str = "movierec_") -> None:
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self.prefix = prefix
        self.meta = sa.MetaData()
        self.tables: dict[str, sa.Table] = {}
        for name, (schema, keys, _) in TABLES.items():
            cols = [
                sa.Column(
                    f.name,
                    _sa_type(f.type) if not pa.types.is_list(f.type) else sa.String(1024),
                    primary_key=f.name in keys,
                    nullable=f.name not in keys,
                    autoincrement=False,
                )
                for f in schema
            ]
            self.tables[name] = sa.Table(prefix + name, self.meta, *cols)
        self.ingests = sa.Table(
            prefix + "ingests",
            self.meta,
            sa.Column("digest", sa.String(64), primary_key=True),
            sa.Column("table_name", sa.String(32), primary_key=True),
            sa.Column("source", sa.String(1024)),
            sa.Column("rows", sa.BigInteger),
            sa.Column("at", sa.Float),
        )
        create_tables(self.meta, self.engine)

    def drop_all(self) -> None:
        """Drop every movierec table (tests)."""
        self.meta.drop_all(self.engine)

    def count(self, name: str) -> int:
        """Rows in a table."""
        with self.engine.connect() as con:
            return int(
                con.execute(sa.select(sa.func.count()).select_from(self.tables[name])).scalar_one()
            )

    def read(self, name: str) -> pa.Table:
        """Return a whole table, sorted by its key."""
        schema, keys, _ = TABLES[name]
        t = self.tables[name]
        with self.engine.connect() as con:
            rows = con.execute(sa.select(t).order_by(*[t.c[k] for k in keys])).all()
        cols: dict[str, list[Any]] = {f.name: [r[i] for r in rows] for i, f in enumerate(schema)}
        for f in schema:
            if pa.types.is_list(f.type):
                cols[f.name] = [v.split("|") if v else [] for v in cols[f.name]]
        return pa.table({f.name: pa.array(cols[f.name], f.type) for f in schema}, schema=schema)

    def _upsert(self, name: str) -> Any:
        schema, keys, order_col = TABLES[name]
        t = self.tables[name]
        dialect = self.engine.dialect.name
        values = [f.name for f in schema if f.name not in keys]
        if dialect in ("postgresql", "sqlite"):
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as dialect_insert
            else:
                from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
            ins: Any = dialect_insert(t)
            if not values:
                return ins.on_conflict_do_nothing(index_elements=list(keys))
            return ins.on_conflict_do_update(
                index_elements=list(keys),
                set_={c: ins.excluded[c] for c in values},
                where=(t.c[order_col] <= ins.excluded[order_col]) if order_col else None,
            )
        if dialect in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert as my_insert

            my = my_insert(t)
            if not values:
                return my.prefix_with("IGNORE")
            if order_col:
                newer = my.inserted[order_col] >= t.c[order_col]
                # MySQL assigns left to right: the order column must be updated last.
                ordered = [c for c in values if c != order_col] + [order_col]
                return my.on_duplicate_key_update(
                    [(c, sa.func.if_(newer, my.inserted[c], t.c[c])) for c in ordered]
                )
            return my.on_duplicate_key_update({c: my.inserted[c] for c in values})
        raise NotImplementedError(f"no upsert for SQL dialect {dialect!r}")

    def _merge(self, name: str, table: pa.Table) -> tuple[int, int]:
        schema = TABLES[name][0]
        table = merge_tables(name, None, table)  # dedupe within the batch first
        before = self.count(name)
        stmt = self._upsert(name)
        pylists = {f.name: table[f.name].to_pylist() for f in schema}
        for f in schema:
            if pa.types.is_list(f.type):
                pylists[f.name] = ["|".join(v) for v in pylists[f.name]]
        n = table.num_rows
        with self.engine.begin() as con:
            for start in range(0, n, self.BATCH):
                stop = min(n, start + self.BATCH)
                rows = [{c: pylists[c][i] for c in schema.names} for i in range(start, stop)]
                con.execute(stmt, rows)
        return before, self.count(name)

    def _ingested(self, digest: str, name: str) -> bool:
        q = sa.select(self.ingests.c.digest).where(
            self.ingests.c.digest == digest, self.ingests.c.table_name == name
        )
        with self.engine.connect() as con:
            return con.execute(q).first() is not None

    def _record(self, digest: str, name: str, source: str, rows: int) -> None:
        with self.engine.begin() as con:
            con.execute(
                sa.insert(self.ingests),
                {
                    "digest": digest,
                    "table_name": name,
                    "source": source[-1024:],
                    "rows": rows,
                    "at": time.time(),
                },
            )


def open_store(settings: Settings) -> Store:
    """The configured store: SQL when ``MOVIEREC_DATABASE_URL`` is set, else Parquet under home."""
    url = settings.reveal(settings.database_url)
    if url:
        return SqlStore(url)
    return ParquetStore(settings.store_dir)
