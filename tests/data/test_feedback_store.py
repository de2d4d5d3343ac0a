from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from movierec.data.feedback import FeedbackStore
from movierec.data.user_feedback import UserFeedback

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _exercise(url: str, table: str) -> None:
    store = FeedbackStore(url, table=table)
    try:
        a = store.add(1, 10, "like", None, "ui", None)
        b = store.add(1, 11, "dislike", None, None, 1.7e9)
        store.add(1, 12, "rating", 2.0, None, None)
        store.add(2, 10, "watch", 30.0, "stream", None)
        assert b > a
        fb = store.user(1)
        assert fb is not None and set(fb.liked) == {10} and fb.disliked == {11, 12}
        assert store.count() == 4
        assert [e["movie_id"] for e in store.since(0)] == [10, 11, 12, 10]
        # a second store on the same database rebuilds the overlay from the committed rows
        again = FeedbackStore(url, table=table)
        fb2 = again.user(1)
        assert fb2 is not None and fb2.disliked == {11, 12} and set(fb2.liked) == {10}
        assert again.user(2) is not None and again.user(3) is None
        again.close()
    finally:
        store.drop()
        store.close()


def test_sqlite_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    _exercise(url, "movierec_feedback")
    store = FeedbackStore(url)
    with store.engine.connect() as con:
        assert con.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert con.execute(sa.text("PRAGMA synchronous")).scalar() == 2  # FULL
    store.close()


def test_postgresql() -> None:
    try:
        with sa.create_engine(PG_URL).connect():
            pass
    except Exception:
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    _exercise(PG_URL, f"fb_{uuid.uuid4().hex[:8]}")


def test_overlay_rules() -> None:
    fb = UserFeedback()
    fb.apply(1, "like", None)
    fb.apply(1, "dislike", None)  # the latest signal wins
    fb.apply(2, "rating", 4.5)
    fb.apply(3, "watch", 10.0)
    fb.apply(3, "watch", 5.0)
    assert fb.disliked == {1} and fb.liked == {2: 4.5} and fb.watched == {3: 15.0}
    assert fb.positives() == {2: 4.5, 3: 15.0} and fb.touched() == {1, 2, 3}


def test_user_returns_a_copy_that_later_events_do_not_change(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}")
    try:
        store.add(1, 10, "like", None, None, None)
        read = store.user(1)
        assert read is not None
        before = read.state()
        store.add(1, 11, "like", None, None, None)  # arrives while a request holds ``read``
        read.apply(12, "dislike", None)  # and the reader's own changes stay its own
        assert read.state() != before and 11 not in read.liked
        now = store.user(1)
        assert now is not None and set(now.liked) == {10, 11} and not now.disliked
    finally:
        store.close()


def test_state_is_canonical() -> None:
    a, b = UserFeedback(), UserFeedback()
    for m in (3, 1, 2):
        a.apply(m, "like", None)
    for m in (2, 3, 1):
        b.apply(m, "like", None)
    assert a.state() == b.state() and hash(a.state()) == hash(b.state())
    b.apply(4, "watch", 1.0)
    assert a.state() != b.state()
    c = a.copy()
    c.apply(1, "dislike", None)
    assert a.state() != c.state() and 1 in a.liked
