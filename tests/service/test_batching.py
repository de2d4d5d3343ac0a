"""Dynamic batching of per-request scoring: same answers as one by one, batches really form."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from movierec.data.user_feedback import UserFeedback
from movierec.lifecycle.bundle import load_bundle
from movierec.service.batching import RowBatcher
from movierec.service.engine import Engine


@pytest.fixture(scope="module")
def engine(trained_home: Path) -> Engine:
    # every fold-in request scored (no answers kept by feedback state): batches must form
    return Engine(load_bundle(trained_home / "bundles"), cache_feedback=False)


def _rows(engine: Engine, n: int) -> list[tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]]:
    """(values, times, exclusions) of ``n`` known users, each with one fresh like."""
    out = []
    movies = engine.bundle.items.ids
    for u in range(n):
        fb = UserFeedback()
        fb.apply(int(movies[(7 * u) % movies.size]), "like", None)
        values, ts = engine.overlay.row(u, fb)
        out.append((values, ts, engine.overlay.exclusions(u, fb, True)))
    return out


def _gate(monkeypatch: pytest.MonkeyPatch, model: Any) -> tuple[threading.Event, threading.Event]:
    """Hold the model's first scoring call until released (so that later callers queue up)."""
    entered, release = threading.Event(), threading.Event()
    real = model.score_rows

    def gated(values: sp.csr_matrix, timestamps: sp.csr_matrix | None = None) -> np.ndarray:
        if not entered.is_set():
            entered.set()
            assert release.wait(30)
        out: np.ndarray = real(values, timestamps)
        return out

    monkeypatch.setattr(model, "score_rows", gated)
    return entered, release


def _held(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, strategy: str, n: int, threads: int
) -> tuple[Any, list[Any], list[Any], RowBatcher, threading.Event, threading.Event]:
    """(model, n rows, their answers alone, a batcher, the gate's entered and release)."""
    model = engine.model(strategy)
    rows = _rows(engine, n)
    alone = [model.recommend_history(v, 10, timestamps=t) for v, t, _ in rows]
    entered, release = _gate(monkeypatch, model)
    return model, rows, alone, RowBatcher(threads=threads), entered, release


@pytest.mark.parametrize("strategy", ["ranked", "ease", "als"])
def test_rows_that_arrive_together_are_scored_as_one_batch_with_the_same_answers(
    engine: Engine, strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one thread: the batches' composition is known
    model, rows, alone, batcher, entered, release = _held(engine, monkeypatch, strategy, 7, 1)
    results: dict[int, Any] = {}

    def ask(i: int) -> None:
        v, t, ex = rows[i]
        results[i] = batcher.top(model, lambda: (v, t, ex), 10 if i % 2 else 5)

    first = threading.Thread(target=ask, args=(0,))
    first.start()
    assert entered.wait(30)  # the first row is being scored: the next six queue up
    others = [threading.Thread(target=ask, args=(i,)) for i in range(1, 7)]
    for t in others:
        t.start()
    while len(batcher._queue) < 6:  # all six queued behind the running batch
        threading.Event().wait(0.01)
    release.set()
    for t in [first, *others]:
        t.join(60)
    assert (batcher.batches, batcher.rows) == (2, 7)  # one alone, then the six together
    for i, rb in results.items():
        k = 10 if i % 2 else 5
        np.testing.assert_array_equal(rb.items[0], alone[i].items[0][:k])
        np.testing.assert_allclose(rb.scores[0], alone[i].scores[0][:k], rtol=1e-6)


def test_a_second_thread_scores_while_the_first_batch_runs(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two threads
    model, rows, alone, batcher, entered, release = _held(engine, monkeypatch, "ranked", 5, 2)
    results: dict[int, Any] = {}

    def ask(i: int) -> None:
        v, t, ex = rows[i]
        results[i] = batcher.top(model, lambda: (v, t, ex), 10)

    first = threading.Thread(target=ask, args=(0,))
    first.start()
    assert entered.wait(30)  # the first thread holds row 0: the other rows go to a second
    others = [threading.Thread(target=ask, args=(i,)) for i in range(1, 5)]
    for t in others:
        t.start()
    for t in others:
        t.join(60)
    assert sorted(results) == [1, 2, 3, 4] and batcher.rows == 4  # answered while 0 is held
    assert batcher._live == 2
    release.set()
    first.join(60)
    assert batcher.rows == 5
    for i, rb in results.items():
        np.testing.assert_array_equal(rb.items[0], alone[i].items[0])
        np.testing.assert_allclose(rb.scores[0], alone[i].scores[0], rtol=1e-6)


def test_lone_rows_go_to_the_thread_that_waited_last_and_a_spare_thread_ends(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a burst has started two threads, one request at a time is scored by one thread
    (the last to wait: its caches are warm), and the other ends when idle for IDLE_S."""
    monkeypatch.setattr("movierec.service.batching.IDLE_S", 1.0)
    model, rows, alone, batcher, entered, release = _held(engine, monkeypatch, "ease", 3, 2)
    scorer: list[str] = []
    gated = model.score_rows

    def named(values: sp.csr_matrix, timestamps: sp.csr_matrix | None = None) -> np.ndarray:
        scorer.append(threading.current_thread().name + str(threading.get_ident()))
        out: np.ndarray = gated(values, timestamps)
        return out

    monkeypatch.setattr(model, "score_rows", named)
    v, t, ex = rows[0]
    first = threading.Thread(target=batcher.top, args=(model, lambda: (v, t, ex), 10))
    first.start()
    assert entered.wait(30)  # thread one holds a row: the next starts thread two
    batcher.top(model, lambda: (v, t, ex), 10)
    release.set()
    first.join(60)
    assert batcher._live == 2
    scorer.clear()
    stop = time.monotonic() + 2.5  # lone rows for longer than IDLE_S
    while time.monotonic() < stop:
        rb = batcher.top(model, lambda: rows[1], 10)
        np.testing.assert_array_equal(rb.items[0], alone[1].items[0])
        time.sleep(0.005)
    assert len(set(scorer)) == 1  # always the thread that waited last
    assert batcher._live == 1  # the spare one timed out


def test_one_bad_row_fails_only_its_own_request(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = engine.model("ease")
    rows = _rows(engine, 3)
    values, ts, _ = rows[1]
    extra = (ts.indices.max() + 1) % ts.shape[1]
    broken_ts = sp.csr_matrix(  # times of one more item than the history has
        (np.append(ts.data, 1.0), np.append(ts.indices, extra), np.array([0, ts.nnz + 1])),
        shape=ts.shape,
    )
    with pytest.raises(ValueError, match="columns"):  # refused: a row of the wrong width
        RowBatcher().score(model, sp.csr_matrix((1, values.shape[1] + 1)), None)
    batcher = RowBatcher(threads=1)  # one thread: the batches' composition is known
    entered, release = _gate(monkeypatch, model)
    results: dict[int, Any] = {}

    def ask(i: int, values: sp.csr_matrix, ts: sp.csr_matrix | None) -> None:
        try:
            results[i] = batcher.score(model, values, ts)
        except Exception as e:
            results[i] = e

    jobs = [(0, rows[0][0], rows[0][1]), (1, values, broken_ts), (2, rows[2][0], rows[2][1])]
    threads = [threading.Thread(target=ask, args=job) for job in jobs]
    threads[0].start()
    assert entered.wait(30)
    for t in threads[1:]:
        t.start()
    while len(batcher._queue) < 2:
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join(60)
    assert isinstance(results[1], Exception)
    for i in (0, 2):
        np.testing.assert_allclose(
            results[i], model.score_rows(rows[i][0], rows[i][1])[0], rtol=1e-6
        )


def test_concurrent_fold_in_answers_equal_sequential_ones(engine: Engine) -> None:
    users = [int(u) for u in engine.bundle.users.ids[:12]]
    movies = engine.bundle.items.ids
    feedback = {}
    for i, u in enumerate(users):
        fb = UserFeedback()
        fb.apply(int(movies[(11 * i) % movies.size]), "like", None)
        feedback[u] = fb
    expected = {u: engine.recommend(u, 10, "ranked", feedback=feedback[u]) for u in users}
    got: dict[int, Any] = {}
    start = threading.Barrier(len(users))

    def ask(u: int) -> None:
        start.wait()
        got[u] = engine.recommend(u, 10, "ranked", feedback=feedback[u])

    before = engine.batcher.batches
    threads = [threading.Thread(target=ask, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for u in users:
        assert [i.movie_id for i in got[u].items] == [i.movie_id for i in expected[u].items]
        assert got[u].source == "ranked_foldin"
    assert engine.batcher.batches - before <= len(users)


def test_rows_awaited_on_an_event_loop_join_the_batches_with_the_same_answers(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one thread: the batches' composition is known
    model, rows, alone, batcher, entered, release = _held(engine, monkeypatch, "ranked", 7, 1)
    first: dict[str, Any] = {}
    holder = threading.Thread(
        target=lambda: first.setdefault("rb", batcher.top(model, lambda: rows[0], 10))
    )
    holder.start()
    assert entered.wait(30)  # a thread's row is being scored: six awaited rows queue up

    def release_when_queued() -> None:
        while len(batcher._queue) < 6:
            threading.Event().wait(0.01)
        release.set()

    threading.Thread(target=release_when_queued).start()

    async def ask() -> list[Any]:
        return await asyncio.gather(
            *(batcher.top_async(model, lambda r=r: r, 10) for r in rows[1:])  # type: ignore[misc]
        )

    awaited = asyncio.run(ask())
    holder.join(60)
    got = [first["rb"], *awaited]
    assert (batcher.batches, batcher.rows) == (2, 7)  # one alone, then the six together
    for rb, expected in zip(got, alone, strict=True):
        np.testing.assert_array_equal(rb.items[0], expected.items[0])
        np.testing.assert_allclose(rb.scores[0], expected.scores[0], rtol=1e-6)


def test_a_cancelled_request_row_is_not_scored(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = engine.model("ease")
    rows = _rows(engine, 2)
    batcher = RowBatcher(threads=1)  # one thread: the batches' composition is known
    entered, release = _gate(monkeypatch, model)
    holder = threading.Thread(target=lambda: batcher.top(model, lambda: rows[0], 10))
    holder.start()
    assert entered.wait(30)
    built: list[int] = []

    def prepare() -> tuple[sp.csr_matrix, sp.csr_matrix | None, sp.csr_matrix | None]:
        built.append(1)
        return rows[1]

    async def ask_then_leave() -> None:
        task = asyncio.create_task(batcher.top_async(model, prepare, 10))
        while not batcher._queue:
            await asyncio.sleep(0.01)
        task.cancel()  # the client went away while its row waited
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(ask_then_leave())
    release.set()
    holder.join(60)
    deadline = time.monotonic() + 30
    while batcher._queue and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    threading.Event().wait(0.1)
    assert built == [] and (batcher.batches, batcher.rows) == (1, 1)


def test_answers_awaited_on_the_loop_equal_the_worker_thread_ones(engine: Engine) -> None:
    users = [int(u) for u in engine.bundle.users.ids[:6]]
    movies = [int(m) for m in engine.bundle.items.ids[:50]]
    for strategy in ("ranked", "ease", "als"):
        for i, u in enumerate(users):
            fb = UserFeedback()
            fb.apply(movies[(5 * i) % len(movies)], "like", None)
            assert engine.scores_afresh(u, strategy, fb)
            expected = engine.recommend(u, 10, strategy, feedback=fb)
            got = asyncio.run(engine.recommend_afresh(u, 10, strategy, fb, True))
            assert got == expected
        liked = movies[:5]
        assert engine.knows_any(liked)
        assert asyncio.run(engine.cold_async(liked, movies[5:7], 10, strategy)) == engine.cold(
            liked, movies[5:7], 10, strategy
        )
    fb = UserFeedback()
    fb.apply(movies[0], "like", None)
    assert not engine.scores_afresh(users[0], "mixed", fb)
    assert not engine.scores_afresh(users[0], "ranked", None)
    assert not engine.knows_any([10**9])


def _traced(rows: list[Any], i: int, where: list[int]) -> Any:
    """A row's builder that notes the thread it runs on (the one that scores the row)."""

    def build() -> Any:
        where.append(threading.get_ident())
        return rows[i]

    return build


def test_a_lone_row_on_a_quiet_server_is_scored_on_the_event_loop(engine: Engine) -> None:
    model = engine.model("ranked")
    rows = _rows(engine, 2)
    alone = [model.recommend_history(v, 10, timestamps=t) for v, t, _ in rows]
    batcher = RowBatcher(threads=1)
    where: list[int] = []

    async def ask(i: int, quiet: bool) -> tuple[Any, int]:
        rb = await batcher.top_async(model, _traced(rows, i, where), 10, lambda: quiet)
        return rb, threading.get_ident()

    quiet, loop_thread = asyncio.run(ask(0, True))
    assert where == [loop_thread]  # scored where it was awaited: no scoring thread started
    assert (batcher.inline, batcher.rows, batcher._live) == (1, 1, 0)
    busy, loop_thread = asyncio.run(ask(1, False))  # another request in flight: the batches
    assert where[1] != loop_thread and (batcher.inline, batcher.rows, batcher._live) == (1, 2, 1)
    for rb, expected in zip([quiet, busy], alone, strict=True):
        np.testing.assert_array_equal(rb.items[0], expected.items[0])
        np.testing.assert_allclose(rb.scores[0], expected.scores[0], rtol=1e-6)


def test_requests_read_together_or_behind_a_running_batch_are_not_scored_on_the_loop(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, rows, alone, batcher, entered, release = _held(engine, monkeypatch, "ranked", 4, 1)
    where: list[int] = []
    in_flight = [0]

    async def ask(i: int) -> Any:  # a request holds a work slot while its row is awaited
        in_flight[0] += 1
        try:
            return await batcher.top_async(
                model, _traced(rows, i, where), 10, lambda: in_flight[0] == 1
            )
        finally:
            in_flight[0] -= 1

    async def together() -> list[Any]:  # two requests read in the same turn of the loop
        return await asyncio.gather(ask(0), ask(1))

    release.set()
    got = asyncio.run(together())
    assert batcher.inline == 0 and threading.get_ident() not in where
    # a row that finds a batch running queues behind it, however quiet the rest is
    entered.clear()
    release.clear()
    holder = threading.Thread(target=lambda: batcher.top(model, lambda: rows[2], 10))
    holder.start()
    assert entered.wait(30)
    threading.Thread(target=lambda: (threading.Event().wait(0.2), release.set())).start()
    got.append(asyncio.run(ask(3)))
    holder.join(60)
    assert batcher.inline == 0 and threading.get_ident() not in where
    for rb, expected in zip(got, [alone[0], alone[1], alone[3]], strict=True):
        np.testing.assert_array_equal(rb.items[0], expected.items[0])
        np.testing.assert_allclose(rb.scores[0], expected.scores[0], rtol=1e-6)
