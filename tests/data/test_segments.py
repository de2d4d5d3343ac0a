"""Event segments: offsets stored with the data, conflicts, identity dedup on read."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from movierec.data.feedback import FeedbackStore
from movierec.data.segments import OffsetConflictError
from movierec.data.served import ServedLog

T = 1_709_287_200


def watches(rows: list[tuple[int, int, int]]) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int32()),
            "movie_id": pa.array([r[1] for r in rows], pa.int32()),
            "minute": pa.array([r[2] for r in rows], pa.int32()),
            "timestamp": pa.array([T + r[2] for r in rows], pa.int64()),
        }
    )


def ratings(rows: list[tuple[int, int, float]]) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int32()),
            "movie_id": pa.array([r[1] for r in rows], pa.int32()),
            "rating": pa.array([r[2] for r in rows], pa.float32()),
            "timestamp": pa.array([T] * len(rows), pa.int64()),
        }
    )


def test_offsets_move_with_the_data_and_a_stale_writer_loses(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    seg = store.segments
    assert seg.next_offsets("t") == {}
    seg.append("t", {}, {0: 3}, {"watches": watches([(1, 10, 0), (1, 10, 1)])}, 3)
    assert seg.next_offsets("t") == {0: 3}
    # a writer that filtered with the old offsets (none stored) stores nothing
    with pytest.raises(OffsetConflictError):
        seg.append("t", {}, {0: 2}, {"watches": watches([(2, 20, 0)])}, 2)
    with pytest.raises(OffsetConflictError):
        seg.append("t", {0: 1}, {0: 5}, {"watches": watches([(2, 20, 0)])}, 2)
    seg.append("t", {0: 3}, {0: 5, 1: 1}, {"ratings": ratings([(1, 11, 4.5)])}, 3)
    assert seg.next_offsets("t") == {0: 5, 1: 1}
    assert store.stored_events() == 3
    store.close()


def test_readers_count_each_identity_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    writer = FeedbackStore(url, overlay=False)
    # the same watch minute in two batches (a producer's retry), a second minute, a rating
    writer.segments.append("t", {}, {0: 2}, {"watches": watches([(1, 10, 0), (1, 10, 1)])}, 2)
    writer.segments.append(
        "t", {0: 2}, {0: 4}, {"watches": watches([(1, 10, 0)]), "ratings": ratings([(1, 11, 4)])}, 2
    )
    assert writer.stored_events() == 4 and writer.count() == 3
    events = writer.since(0)
    assert sorted((e["signal"], e["movie_id"]) for e in events) == [
        ("rating", 11),
        ("watch", 10),
        ("watch", 10),
    ]
    assert all(e["source"] == "stream:t" for e in events)
    reader = FeedbackStore(url)  # the overlay at start-up: watch depth 2 distinct minutes
    fb = reader.user(1)
    assert fb is not None and fb.watched == {10: 2.0} and fb.rated == {11: 4.0}
    writer.close()
    reader.close()


def test_a_live_overlay_applies_a_retried_line_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    reader = FeedbackStore(url)
    writer = FeedbackStore(url, overlay=False)
    writer.segments.append("t", {}, {0: 1}, {"watches": watches([(7, 70, 3)])}, 1)
    assert reader.refresh() == {7}
    writer.segments.append("t", {0: 1}, {0: 2}, {"watches": watches([(7, 70, 3)])}, 1)
    reader.refresh()
    fb = reader.user(7)
    assert fb is not None and fb.watched == {70: 1.0}
    writer.close()
    reader.close()


def test_served_lists_of_segments_and_rows_are_read_together(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}", overlay=False)
    served = ServedLog(store.engine)
    served.add_many(
        [
            {
                "event_key": "api:1",
                "timestamp": T,
                "user_id": 1,
                "server": "api",
                "status": 200,
                "items": "5,6",
                "latency_ms": 3.0,
            }
        ]
    )
    table = pa.table(
        {
            "user_id": pa.array([2], pa.int32()),
            "timestamp": pa.array([T + 5], pa.int64()),
            "server": ["n1:8082"],
            "status": pa.array([200], pa.int32()),
            "items": ["1,2,3"],
            "latency_ms": [12.0],
            "partition": pa.array([1], pa.int32()),
            "offset": pa.array([41], pa.int64()),
        }
    )
    store.segments.append("t", {}, {1: 42}, {"served": table}, 1)
    rows = served.rows()
    assert served.count() == 2 and [r["items"] for r in rows] == [[5, 6], [1, 2, 3]]
    assert rows[1]["event_key"] == "q:t:1:41" and rows[1]["server"] == "n1:8082"
    assert served.rows(since=T + 1)[0]["user_id"] == 2 and len(served.rows(since=T + 1)) == 1
    store.close()


def test_postgresql_offsets_and_conflicts() -> None:
    import uuid

    import sqlalchemy as sa

    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    try:
        with sa.create_engine(url).connect():
            pass
    except Exception:
        pytest.skip(f"PostgreSQL is not reachable at {url}")
    store = FeedbackStore(url, table=f"fb_{uuid.uuid4().hex[:8]}", overlay=False)
    topic = f"t{uuid.uuid4().hex[:8]}"
    try:
        seg = store.segments
        seg.append(topic, {}, {0: 2}, {"watches": watches([(1, 10, 0), (1, 10, 1)])}, 2)
        with pytest.raises(OffsetConflictError):
            seg.append(topic, {}, {0: 1}, {"watches": watches([(2, 20, 0)])}, 1)
        with pytest.raises(OffsetConflictError):
            seg.append(topic, {0: 1}, {0: 3}, {"watches": watches([(2, 20, 0)])}, 1)
        assert seg.next_offsets(topic) == {0: 2}
        mine = [s for s in seg.read() if s.topic == topic]
        assert len(mine) == 1 and mine[0].tables["watches"].num_rows == 2
    finally:
        store.drop()  # its own feedback and segment tables (named after the feedback table)
        store.close()
