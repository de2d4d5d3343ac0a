"""Dynamic batching of per-request scoring: concurrent histories of one model scored at once.

Every per-request answer (a user with feedback since training, a cold start, a session)
scores one history row. Under concurrent load, scoring those rows one call at a time pays
each model's fixed cost (SciPy set-up, six candidate sources, feature assembly, the compiled
trees' call) once per request, and the calls contend for the interpreter lock. The
:class:`RowBatcher` lets them share it: requests queue their row, and a scoring thread takes
every row queued for the model of the oldest one (at most ``max_rows``) and scores them with
one :meth:`Recommender.score_rows` call. A row queued while every scoring thread is busy
starts another, up to ``threads`` (the ``scoring_threads`` setting, 2 by default): most of a
batch runs in compiled code that releases the interpreter lock (sources' products, the
top-k, features, the compiled trees), so two batches overlap on two cores. On ml-latest-small
with ``ranked`` (one worker, wrk at 8 connections, medians of five alternating rounds), the
second thread took users with fresh feedback from 444 to 571 requests a second. There is no waiting
window: a lone request is scored at once, and batches form only while earlier batches are
being scored, so batching never adds latency to a quiet server.

On a quiet server a lone row awaited on the event loop skips the scoring thread altogether
(:meth:`RowBatcher.top_async` with ``quiet``): when the caller's request is the only
expensive one in flight and no batch runs or waits, the row is scored right there, on the
loop. That saves the two wake-ups of a hand-off (the scoring thread's and the loop's, about
0.1 ms on two cores). The check comes after one turn of the loop, so that requests read in
the same turn see each other and go to the batches; under load, rows always do.

Requests wait for their row in one of two ways. The event loop awaits it
(:meth:`RowBatcher.top_async`): no worker thread is woken for the request, and a batch's
answers reach the loop in one callback, so a batch of n rows costs two thread switches
instead of about 2n (worker hops and wake-ups: 0.5-1 ms of CPU a request on two busy cores).
Code already in a worker thread blocks on an event (:meth:`RowBatcher.top`,
:meth:`RowBatcher.score`). The rows of both kinds join the same batches.

A model's rows are scored independently of each other (the contract tests check batch =
one-by-one), so a batched answer is the answer the request would get alone. A batch that
raises is retried row by row, so one bad row fails only its own request.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec.models.base import Recommender
from movierec.models.topk import topk
from movierec.service.metrics import SCORING_BATCHES, SCORING_ROWS
from movierec.spare import spare_core
from movierec.types import RecBatch, csr

#: Rows scored in one call at most (bounds a batch's dense score arrays).
MAX_ROWS = 32
#: Scoring threads per batcher at most (``scoring_threads`` in the settings).
THREADS = 2
#: Seconds the scoring thread waits for a row before it ends (the next row starts one).
IDLE_S = 10.0
#: Largest catalog whose lone rows may be scored on the event loop (a row's dense scores and
#: top-k are O(items): beyond this, the loop's other requests would wait too long).
INLINE_MAX_ITEMS = 20_000


#: What a job's history is made from: ``() -> (values, timestamps, items left out)``.
Prepare = Callable[[], tuple[sp.csr_matrix, sp.csr_matrix | None, sp.csr_matrix | None]]


@dataclass
class _Job:
    model: Recommender
    #: Builds the row (run by the scoring thread, so that a waiting request holds nothing).
    prepare: Prepare
    #: Top-k jobs: k; score jobs (``k`` None) get the whole row.
    k: int | None = None
    values: sp.csr_matrix | None = None
    timestamps: sp.csr_matrix | None = None
    exclude: sp.csr_matrix | None = None
    result: Any = None
    error: BaseException | None = None
    #: Set when the job is done (a caller in a thread waits on it).
    wake: threading.Event | None = None
    #: Resolved on its loop when the job is done (a caller on an event loop awaits it).
    future: asyncio.Future[Any] | None = None

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result

    @property
    def abandoned(self) -> bool:
        """The awaiting request is gone (cancelled): its row need not be scored."""
        return self.future is not None and self.future.cancelled()


def _resolve(jobs: list[_Job]) -> None:
    """Hand finished jobs to their awaiting requests (runs on their event loop)."""
    for j in jobs:
        fut = j.future
        if fut is None or fut.done():
            continue
        if j.error is not None:
            fut.set_exception(j.error)
        else:
            fut.set_result(j.result)


def _stack(mats: list[sp.csr_matrix]) -> sp.csr_matrix:
    """One CSR of the given one-row CSRs, in order (no SciPy ``vstack`` set-up per call).

    A lone row is returned as it is (a quiet server's batch).
    """
    if len(mats) == 1:
        return mats[0]
    data = np.concatenate([m.data for m in mats])
    indices = np.concatenate([m.indices for m in mats])
    indptr = np.zeros(len(mats) + 1, indices.dtype)
    np.cumsum(np.array([m.indptr[-1] for m in mats]), out=indptr[1:])
    return csr(data, indices, indptr, (len(mats), mats[0].shape[1]))


class RowBatcher:
    """Scores one history row per caller, batching the callers that arrive together.

    Attributes:
        max_rows: Most rows per batch.
        batches: Batches scored so far.
        rows: Rows scored so far (``rows / batches`` is the mean batch size).
    """

    def __init__(self, max_rows: int = MAX_ROWS, threads: int = THREADS) -> None:
        self.max_rows = max_rows
        self.threads = threads
        self.batches = 0
        self.rows = 0
        #: Lone rows scored where their caller awaited them (the event loop), of ``rows``.
        self.inline = 0
        #: Whether such a row shares its kernels with the spare core (``spare_core`` setting).
        self.spare = True
        self._lock = threading.Lock()
        self._queue: list[_Job] = []
        #: Scoring threads running, and the waiting ones' wake-ups, the latest to wait last.
        #: A row wakes the thread that waited last (its caches are the warmest; a quiet
        #: server's lone requests all go to one thread), or starts another while none
        #: waits, up to ``threads``: each takes the next batch.
        self._live = 0
        self._parked: list[threading.Condition] = []

    def score(
        self, model: Recommender, values: sp.csr_matrix, timestamps: sp.csr_matrix | None
    ) -> np.ndarray:
        """Scores (n_items, float32) of one history row under ``model``."""
        scores: np.ndarray = self._wait(_Job(model, lambda: (values, timestamps, None)))
        return scores

    def top(self, model: Recommender, prepare: Prepare, k: int) -> RecBatch:
        """The top ``k`` (one-row :class:`RecBatch`) of the row ``prepare`` builds.

        ``prepare`` returns the history row, its times and the items to leave out; the
        scoring thread calls it, so requests waiting for a batch compete for nothing. The
        batch's top-k is one call too: each row takes the first ``k`` of the batch's largest
        ``k``, which is its own top ``k`` (best first, ties by the smaller index).
        """
        top: RecBatch = self._wait(_Job(model, prepare, k))
        return top

    async def top_async(
        self,
        model: Recommender,
        prepare: Prepare,
        k: int,
        quiet: Callable[[], bool] | None = None,
    ) -> RecBatch:
        """:meth:`top` awaited on the running event loop (no worker thread waits for it).

        A cancelled request's row is skipped if its batch has not started yet. ``quiet``
        says whether the caller's request is the only expensive one in flight: then, if no
        batch runs or waits either (after one turn of the loop, which lets requests read in
        the same turn reach this point too) and the catalog has at most
        :data:`INLINE_MAX_ITEMS` items, the row is scored here, with no hand-off.
        """
        if quiet is not None and model.n_items <= INLINE_MAX_ITEMS and quiet():
            await asyncio.sleep(0)  # (only then: a loaded server's rows never wait for a turn)
            if quiet() and self._idle():
                return self._inline(model, prepare, k)
        future = asyncio.get_running_loop().create_future()
        self._put(_Job(model, prepare, k, future=future))
        top: RecBatch = await future
        return top

    def _idle(self) -> bool:
        """No row waits and every scoring thread waits for one (or none runs)."""
        with self._lock:
            return not self._queue and len(self._parked) == self._live

    def _inline(self, model: Recommender, prepare: Prepare, k: int) -> RecBatch:
        """Score one row in the caller's thread, as a batch of its own."""
        job = _Job(model, prepare, k)
        with spare_core() if self.spare else contextlib.nullcontext():  # the other core idles
            self._run(model, [job])
        self._scored(1)
        self.inline += 1
        top: RecBatch = job.get()
        return top

    def _wait(self, job: _Job) -> Any:
        job.wake = threading.Event()
        self._put(job)
        job.wake.wait()
        return job.get()

    def _put(self, job: _Job) -> None:
        with self._lock:
            self._queue.append(job)
            if self._parked:
                self._parked.pop().notify()
            elif self._live < self.threads:
                self._live += 1
                threading.Thread(target=self._serve, name="movierec-scoring", daemon=True).start()

    def _next_batch(self, wake: threading.Condition) -> tuple[Recommender, list[_Job]] | None:
        """The queued rows of the oldest row's model (at most ``max_rows``).

        The thread waits on ``wake`` (its own) while nothing is queued. None after
        :data:`IDLE_S` without a row: the thread ends (a replaced engine's batcher leaves no
        thread behind) and the next row starts another.
        """
        with self._lock:
            deadline = time.monotonic() + IDLE_S
            while not self._queue:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._live -= 1
                    return None
                self._parked.append(wake)
                wake.wait(left)
                if wake in self._parked:  # woken by the time-out, not by a row
                    self._parked.remove(wake)
            model = self._queue[0].model
            batch: list[_Job] = []
            rest: list[_Job] = []
            for j in self._queue:
                (batch if j.model is model and len(batch) < self.max_rows else rest).append(j)
            self._queue = rest
        return model, batch

    def _serve(self) -> None:
        wake = threading.Condition(self._lock)
        while (nxt := self._next_batch(wake)) is not None:
            model, batch = nxt
            live = [j for j in batch if not j.abandoned]
            try:
                if live:
                    self._run(model, live)
            except BaseException as e:  # never leave a request waiting
                for j in live:
                    if j.error is None and j.result is None:
                        j.error = e
            finally:
                if live:
                    self._scored(len(live))
                self._deliver(batch)

    def _scored(self, rows: int) -> None:
        """Count one scored batch of ``rows`` rows (here and on ``/metrics``)."""
        self.batches += 1
        self.rows += rows
        SCORING_BATCHES.inc()
        SCORING_ROWS.inc(rows)

    @staticmethod
    def _deliver(batch: list[_Job]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for j in batch:
            if j.wake is not None:
                j.wake.set()
            elif j.future is not None:
                by_loop.setdefault(j.future.get_loop(), []).append(j)
        for loop, jobs in by_loop.items():  # one wake-up of each loop per batch
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, jobs)

    @staticmethod
    def _run(model: Recommender, batch: list[_Job]) -> None:
        ready = []
        for j in batch:  # a row that cannot be built fails only its own request
            try:
                j.values, j.timestamps, j.exclude = j.prepare()
                if j.values.shape != (1, model.n_items):
                    raise ValueError(f"a history row must be 1 × {model.n_items} columns")
                ready.append(j)
            except Exception as e:
                j.error = e
        with_ts = [j for j in ready if j.timestamps is not None]
        without = [j for j in ready if j.timestamps is None]
        for group in (with_ts, without):
            if group:
                RowBatcher._run_rows(model, group)

    @staticmethod
    def _run_rows(model: Recommender, batch: list[_Job]) -> None:
        try:
            _score(model, batch)
        except Exception as e:
            if len(batch) == 1:
                batch[0].error = e
                return
            for j in batch:  # one bad row fails only its own request
                try:
                    _score(model, [j])
                except Exception as row_error:
                    j.error = row_error


def _score(model: Recommender, batch: list[_Job]) -> None:
    """Score the batch's rows in one call, then the top-k of the rows that ask for it."""
    stamps = [j.timestamps for j in batch if j.timestamps is not None]
    values = _stack([j.values for j in batch if j.values is not None])
    ts = _stack(stamps) if stamps else None  # all rows have times, or none
    scores = model.score_rows(values, ts)
    tops = [r for r, j in enumerate(batch) if j.k is not None]
    for r, j in enumerate(batch):
        if j.k is None:
            j.result = np.asarray(scores[r], np.float32)
    if not tops:
        return
    nothing = csr(
        np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(2, np.int32), (1, values.shape[1])
    )
    excl = [batch[r].exclude for r in tops]  # one row per top-k job, in order
    k = max(int(batch[r].k or 0) for r in tops)
    rb = topk(
        np.array(scores[tops], np.float32),
        k,
        exclude=_stack([nothing if e is None else e for e in excl]),
    )
    for row, r in enumerate(tops):
        kk = int(batch[r].k or 0)
        batch[r].result = RecBatch(rb.items[row : row + 1, :kk], rb.scores[row : row + 1, :kk])
