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
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec.models.base import Recommender
from movierec.models.topk import topk
from movierec.types import RecBatch

#: Rows scored in one call at most (bounds a batch's dense score arrays).
MAX_ROWS = 32
#: Batches of one model scored at once (NumPy, SciPy and the compiled trees release the
#: interpreter lock for much of a batch, so a second batch uses a second core).
PARALLEL = 1


@dataclass
class _Job:
    model: Recommender
    values: sp.csr_matrix
    timestamps: sp.csr_matrix | None
    #: Top-k jobs: the items left out (a one-row CSR) and k; score jobs (``k`` None) get the
    #: whole row.
    exclude: sp.csr_matrix | None = None
    k: int | None = None
    result: Any = None
    error: BaseException | None = None
    done: bool = False

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def _stack(mats: list[sp.csr_matrix]) -> sp.csr_matrix:
    """One CSR of the given one-row CSRs, in order (no SciPy ``vstack`` set-up per call)."""
    counts = np.array([m.nnz for m in mats], np.int64)
    indptr = np.zeros(len(mats) + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    data = np.concatenate([m.data for m in mats])
    indices = np.concatenate([m.indices for m in mats])
    return sp.csr_matrix((data, indices, indptr), shape=(len(mats), mats[0].shape[1]))


class RowBatcher:
    """Scores one history row per caller, batching the callers that arrive together.

    Attributes:
        max_rows: Most rows per batch.
        batches: Batches scored so far.
        rows: Rows scored so far (``rows / batches`` is the mean batch size).
    """

    def __init__(self, max_rows: int = MAX_ROWS, parallel: int = PARALLEL) -> None:
        self.max_rows = max_rows
        self.parallel = parallel
        self.batches = 0
        self.rows = 0
        self._cv = threading.Condition()
        self._queue: list[_Job] = []
        self._running: dict[int, int] = {}

    def score(
        self, model: Recommender, values: sp.csr_matrix, timestamps: sp.csr_matrix | None
    ) -> np.ndarray:
        """Scores (n_items, float32) of one history row under ``model``."""
        scores: np.ndarray = self._submit(_Job(model, values, timestamps))
        return scores

    def top(
        self,
        model: Recommender,
        values: sp.csr_matrix,
        timestamps: sp.csr_matrix | None,
        exclude: sp.csr_matrix,
        k: int,
    ) -> RecBatch:
        """The top ``k`` of one history row (one-row :class:`RecBatch`), ``exclude`` left out.

        The batch's top-k is one call too: each row takes the first ``k`` of the batch's
        largest ``k``, which is its own top ``k`` (best first, ties by the smaller index).
        """
        top: RecBatch = self._submit(_Job(model, values, timestamps, exclude, k))
        return top

    def _submit(self, job: _Job) -> Any:
        model, timestamps = job.model, job.timestamps
        if job.values.shape != (1, model.n_items):
            raise ValueError(f"a history row must be 1 × {model.n_items} columns")
        key = id(model)
        with self._cv:
            self._queue.append(job)
            while not job.done and self._running.get(key, 0) >= self.parallel:
                self._cv.wait()
            if job.done:
                return job.get()
            self._running[key] = self._running.get(key, 0) + 1
            batch = [job]
            for other in self._queue:
                if len(batch) >= self.max_rows:
                    break
                same_kind = (other.timestamps is None) == (timestamps is None)
                if other is not job and other.model is model and same_kind:
                    batch.append(other)
            taken = {id(j) for j in batch}
            self._queue = [j for j in self._queue if id(j) not in taken]
        try:
            self._run(model, batch)
        finally:
            with self._cv:
                self._running[key] -= 1
                for j in batch:
                    j.done = True
                self.batches += 1
                self.rows += len(batch)
                self._cv.notify_all()
        return job.get()

    @staticmethod
    def _run(model: Recommender, batch: list[_Job]) -> None:
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
    values = _stack([j.values for j in batch])
    ts = _stack(stamps) if stamps else None  # all rows have times, or none
    scores = model.score_rows(values, ts)
    tops = [r for r, j in enumerate(batch) if j.k is not None]
    for r, j in enumerate(batch):
        if j.k is None:
            j.result = np.asarray(scores[r], np.float32)
    if not tops:
        return
    excl = [e for e in (batch[r].exclude for r in tops) if e is not None]
    k = max(int(batch[r].k or 0) for r in tops)
    rb = topk(np.array(scores[tops], np.float32), k, exclude=_stack(excl))
    for row, r in enumerate(tops):
        kk = int(batch[r].k or 0)
        batch[r].result = RecBatch(rb.items[row : row + 1, :kk], rb.scores[row : row + 1, :kk])
