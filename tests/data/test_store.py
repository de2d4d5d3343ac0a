from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from movierec.data.ingest import ingest_file, ingest_release
from movierec.data.interactions import InteractionData
from movierec.data.store import ParquetStore, SqlStore, Store
from movierec.errors import RejectRateExceededError
from tests.conftest import write

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MY_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


def _reachable(url: str) -> bool:
    try:
        with sa.create_engine(url).connect():
            return True
    except Exception:
        return False


@pytest.fixture(params=["parquet", "sqlite", "postgresql", "mariadb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    kind = request.param
    if kind == "parquet":
        yield ParquetStore(tmp_path / "store")
        return
    url = {"sqlite": f"sqlite:///{tmp_path / 's.db'}", "postgresql": PG_URL, "mariadb": MY_URL}[
        kind
    ]
    if kind != "sqlite" and not _reachable(url):
        pytest.skip(f"{kind} server on localhost is not reachable at {url}")
    s = SqlStore(url, prefix=f"t{uuid.uuid4().hex[:8]}_")
    try:
        yield s
    finally:
        s.drop_all()


def test_release_round_trip_and_idempotent_reingest(store: Store, synth_release: Path) -> None:
    first = ingest_release(store, synth_release)
    counts = {c.table: c for c in first.counts}
    assert counts["ratings"].rows_after == 20_000 and counts["ratings"].inserted == 20_000
    assert counts["movies"].rows_after > 0
    before = store.counts()
    again = ingest_release(store, synth_release)
    assert all(c.skipped for c in again.counts)
    forced = ingest_release(store, synth_release, force=True)
    assert all(c.inserted == 0 for c in forced.counts)
    assert store.counts() == before
    ratings = store.read("ratings")
    data = InteractionData.from_table(ratings)
    assert data.nnz == 20_000
    movies = store.read("movies").to_pylist()
    assert all(isinstance(m["genres"], list) for m in movies)
    assert any(len(m["genres"]) > 1 for m in movies)


def test_latest_event_wins_across_ingests(store: Store, tmp_path: Path) -> None:
    h = "userId,movieId,rating,timestamp\n"
    a = write(tmp_path / "a.csv", h + "1,10,2.0,964982710\n1,20,3.0,964982700\n")
    b = write(
        tmp_path / "b.csv", h + "1,10,5.0,964982800\n1,20,1.0,964982600\n2,10,4.0,964982600\n"
    )
    ingest_file(store, a, "ratings")
    res = ingest_file(store, b, "ratings")
    assert res.counts[0].inserted == 1
    rows = {(r["user_id"], r["movie_id"]): r["rating"] for r in store.read("ratings").to_pylist()}
    assert rows == {(1, 10): 5.0, (1, 20): 3.0, (2, 10): 4.0}


def test_reject_rate_gate_merges_nothing(store: Store, tmp_path: Path) -> None:
    p = write(
        tmp_path / "bad.csv",
        "userId,movieId,rating,timestamp\n1,10,9.0,964982710\nx,1,1,1\n1,2,4.0,964982710\n",
    )
    with pytest.raises(RejectRateExceededError):
        ingest_file(store, p, "ratings", max_reject_rate=0.5)
    assert store.count("ratings") == 0
    ingest_file(store, p, "ratings", max_reject_rate=0.7)
    assert store.count("ratings") == 1


def test_event_log_ingest(store: Store, tmp_path: Path) -> None:
    write(tmp_path / "m.csv", 'movieId,title,genres\n2571,"Matrix, The (1999)",Action|Sci-Fi\n')
    ingest_file(store, tmp_path / "m.csv", "movies")
    log = write(
        tmp_path / "e.log",
        "2024-03-01T10:15:02,4012,GET /data/m/the+matrix+1999/1.mpg\n"
        "2024-03-01T10:16:02,4012,GET /data/m/the+matrix+1999/2.mpg\n"
        "2024-03-01T11:00:00,4012,GET /rate/the+matrix+1999=4\n"
        "2024-03-01T10:17:00,77,recommendation request n:8082, status 200, result: 1, 2, 87 ms\n",
    )
    ingest_file(store, log, "events")
    ingest_file(store, log, "events", force=True)
    assert store.count("watches") == 2
    assert store.count("requests") == 1
    assert store.read("ratings").to_pylist() == [
        {"user_id": 4012, "movie_id": 2571, "rating": 4.0, "timestamp": 1709290800}
    ]


def test_parquet_store_is_queryable_with_duckdb(synth_release: Path, tmp_path: Path) -> None:
    s = ParquetStore(tmp_path / "store")
    ingest_release(s, synth_release)
    with s.duckdb() as con:
        row = con.execute("SELECT count(*), count(DISTINCT user_id) FROM ratings").fetchone()
    assert row is not None and row[0] == 20_000 and row[1] > 50
    assert not list((tmp_path / "store").glob(".*.parquet"))  # no temp files left


def test_empty_store_reads_empty_tables(tmp_path: Path) -> None:
    s = ParquetStore(tmp_path / "store")
    assert s.read("ratings").num_rows == 0
    assert s.read("ratings").schema.field("user_id").type == pa.int32()
