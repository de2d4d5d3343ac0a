"""Small SQL helpers shared by the event tables: idempotent bulk inserts, additive migrations."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa


def insert_ignoring_known(engine: sa.Engine, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    """Insert rows in one transaction, skipping those whose unique ``event_key`` is stored.

    SQLite and PostgreSQL use ``ON CONFLICT DO NOTHING``, MySQL/MariaDB ``INSERT IGNORE``.

    Returns:
        How many rows were inserted.
    """
    if not rows:
        return 0
    name = engine.dialect.name
    stmt: Any
    if name == "sqlite":  # the driver's executemany on tuples: no per-row statement compiling
        cols = list(rows[0])
        sql = (
            f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            " ON CONFLICT(event_key) DO NOTHING"
        )
        with engine.begin() as con:
            return int(con.exec_driver_sql(sql, [tuple(r[c] for c in cols) for r in rows]).rowcount)
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table).on_conflict_do_nothing(index_elements=["event_key"])
        # psycopg reports no row count for executemany: count the returned keys instead
        with engine.begin() as con:
            return len(con.execute(stmt.returning(table.c.event_key), rows).all())
    else:
        stmt = sa.insert(table).prefix_with("IGNORE")
    with engine.begin() as con:
        return int(con.execute(stmt, rows).rowcount)


def add_missing_column(engine: sa.Engine, table: sa.Table, column: str) -> None:
    """Add a nullable column (and its unique index) to a table created by an older version."""
    present = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
    if column in present:
        return
    col = table.c[column]
    ddl = col.type.compile(dialect=engine.dialect)
    with engine.begin() as con:
        con.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column}" {ddl}'))
        if col.unique:
            con.execute(
                sa.text(
                    f"CREATE UNIQUE INDEX IF NOT EXISTS ix_{table.name}_{column} "
                    f'ON {table.name} ("{column}")'
                )
            )


def create_tables(meta: sa.MetaData, engine: sa.Engine, attempts: int = 3) -> None:
    """Create the tables of ``meta`` that are missing, also when another process does too.

    Two processes opening a fresh database (the stack's services) can both find a table
    missing and both create it; the loser's error is retried, and its next look finds the
    table made.
    """
    for attempt in range(attempts):
        try:
            meta.create_all(engine)
            return
        except sa.exc.DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
