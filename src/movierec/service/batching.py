"""Dynamic batching of per-request scoring: concurrent histories of one model scored at once.

Every per-request answer (a user with feedback since training, a cold start, a session)
scores one history row. Under concurrent load, scoring those rows one call at a time pays
each model's fixed cost (SciPy set-up, six candidate sources, feature assembly, the compiled
trees' call) once per request, and the calls contend for the interpreter lock. The
:class:`RowBatcher` lets them share it: the first caller that finds no batch of its model
running becomes the leader, takes every row queued for that model (its own first, at most
``max_rows``) and scores them with one :meth:`Recommender.score_rows` call; the others wait
for their row. There is no waiting window: a lone request is scored at once, and batches form
only while an earlier batch is being scored, so batching never adds latency to a quiet server.

A model's rows are scored independently of each other (the contract tests check batch =
one-by-one), so a batched answer is the answer the request would get alone. A batch that
raises is retried row by row, so one bad row fails only its own request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec.models.base import Recommender
from movierec.models.topk import topk
from movierec.service.metrics import SCORING_BATCHES, SCORING_ROWS
from movierec.types import RecBatch, csr

#: Rows scored in one call at most (bounds a batch's dense score arrays).
MAX_ROWS = 32


#: What a job's history is made from: ``() -> (values, timestamps, items left out)``.
Prepare = Callable[[], tuple[sp.csr_matrix, sp.csr_matrix | None, sp.csr_matrix | None]]


@dataclass
class _Job:
    model: Recommender
    #: Builds the row (run by the batch's leader, so that a waiting request holds nothing).
    prepare: Prepare
    #: Top-k jobs: k; score jobs (``k`` None) get the whole row.
    k: int | None = None
    values: sp.csr_matrix | None = None
    timestamps: sp.csr_matrix | None = None
    exclude: sp.csr_matrix | None = None
    result: Any = None
    error: BaseException | None = None
    done: bool = False
    #: Set when the job is done, or when it is handed the lead of its model's next batch.
    wake: threading.Event = field(default_factory=threading.Event)

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


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

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self.batches = 0
        self.rows = 0
        self._lock = threading.Lock()
        self._queue: list[_Job] = []
        #: Models with a batch being scored, or handed to the job that leads the next one: one
        #: at a time per model (two at once were slower on two cores: most of a batch holds
        #: the interpreter lock).
        self._running: set[int] = set()

    def score(
        self, model: Recommender, values: sp.csr_matrix, timestamps: sp.csr_matrix | None
    ) -> np.ndarray:
        """Scores (n_items, float32) of one history row under ``model``."""
        scores: np.ndarray = self._submit(_Job(model, lambda: (values, timestamps, None)))
        return scores

    def top(self, model: Recommender, prepare: Prepare, k: int) -> RecBatch:
        """The top ``k`` (one-row :class:`RecBatch`) of the row ``prepare`` builds.

        ``prepare`` returns the history row, its times and the items to leave out; the
        batch's leader calls it, so requests waiting for a batch compete for nothing. The
        batch's top-k is one call too: each row takes the first ``k`` of the batch's largest
        ``k``, which is its own top ``k`` (best first, ties by the smaller index).
        """
        top: RecBatch = self._submit(_Job(model, prepare, k))
        return top

    def _submit(self, job: _Job) -> Any:
        model = job.model
        key = id(model)
        with self._lock:
            self._queue.append(job)
            lead = key not in self._running
            if lead:
                self._running.add(key)
        if not lead:
            # woken once: when a batch scored this job, or to lead the model's next batch
            job.wake.wait()
            if job.done:
                return job.get()
        with self._lock:
            batch = [job]
            for other in self._queue:
                if len(batch) >= self.max_rows:
                    break
                if other is not job and other.model is model:
                    batch.append(other)
            taken = {id(j) for j in batch}
            self._queue = [j for j in self._queue if id(j) not in taken]
        try:
            self._run(model, batch)
        finally:
            with self._lock:
                for j in batch:
                    j.done = True
                self.batches += 1
                self.rows += len(batch)
                # the model's oldest waiting job leads the next batch (no other thread wakes)
                nxt = next((j for j in self._queue if j.model is model), None)
                if nxt is None:
                    self._running.discard(key)
            for j in batch:
                if j is not job:
                    j.wake.set()
            if nxt is not None:
                nxt.wake.set()
            SCORING_BATCHES.inc()
            SCORING_ROWS.inc(len(batch))
        return job.get()

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
