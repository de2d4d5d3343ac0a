"""Per-request top-N of a history with feedback: scored in batches, kept per feedback state.

A user with feedback since training (or a cold start, a session) is answered from their
current history: the training row overlaid with the feedback (:class:`HistoryOverlay`),
scored by the :class:`RowBatcher` together with the other requests of the moment. The answer
depends on the model, the training row, the feedback and ``exclude_seen`` only, so its top-N
is kept under the feedback's whole state: a later request with the same state is a lookup,
and any new event makes a new key (the next answer sees it at once). Unknown users with the
same feedback share an entry (their answers are the same). ``k`` above the top-N is computed
and not kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec.data.user_feedback import UserFeedback
from movierec.models.base import Recommender
from movierec.service.batching import THREADS, Prepare, RowBatcher
from movierec.service.cache import ByteLRU
from movierec.service.overlay import HistoryOverlay
from movierec.types import RecBatch

#: A top-N: item indices and their scores, best first.
Top = tuple[np.ndarray, np.ndarray]


class FoldIn:
    """Top-N of histories with feedback, for callers in threads and on event loops alike.

    Attributes:
        batcher: The batches the rows are scored in.
        keep: Whether answers are kept per feedback state (``cache_feedback_answers``).
        n: How many items a kept answer holds (requests for more are not kept).
        quiet: Whether the awaiting request is the only expensive one in flight (the
            service's work limiter says; None: never assumed). Then a row awaited on the
            event loop, with no batch running or waiting, is scored right there
            (:meth:`RowBatcher.top_async`).
    """

    def __init__(
        self,
        model: Callable[[str], Recommender],
        overlay: HistoryOverlay,
        cache: ByteLRU[Any],
        keep: bool,
        n: int,
        threads: int = THREADS,
    ) -> None:
        self.model = model
        self.overlay = overlay
        self.cache = cache
        self.keep = keep
        self.n = n
        self.batcher = RowBatcher(threads=threads)
        self.quiet: Callable[[], bool] | None = None

    def top(
        self, strategy: str, user_idx: int | None, fb: UserFeedback, exclude_seen: bool, k: int
    ) -> Top:
        """Top ``k`` (or more) of the user's current history; the caller's thread waits."""
        hit, key, n, prepare = self._ask(strategy, user_idx, fb, exclude_seen, k)
        if hit is not None:
            return hit
        return self._keep(key, self.batcher.top(self.model(strategy), prepare, n))

    async def top_async(
        self, strategy: str, user_idx: int | None, fb: UserFeedback, exclude_seen: bool, k: int
    ) -> Top:
        """:meth:`top` awaited on the running event loop (no worker thread waits for it).

        A lone row on a quiet server (see :attr:`quiet`) is scored on the loop itself.
        """
        hit, key, n, prepare = self._ask(strategy, user_idx, fb, exclude_seen, k)
        if hit is not None:
            return hit
        top = await self.batcher.top_async(self.model(strategy), prepare, n, self.quiet)
        return self._keep(key, top)

    def _ask(
        self, strategy: str, user_idx: int | None, fb: UserFeedback, exclude_seen: bool, k: int
    ) -> tuple[Top | None, tuple[Any, ...] | None, int, Prepare]:
        """What a request needs: its kept answer or None, and how to compute and keep one.

        Returns ``(kept answer, key to keep it under (None: not kept), items to score, what
        builds the row)``.
        """
        key, n = None, k
        if self.keep and k <= self.n:
            key, n = (strategy, user_idx, exclude_seen, fb.state()), self.n
        return self._hit(key), key, n, self._prepare(user_idx, fb, exclude_seen)

    def _hit(self, key: tuple[Any, ...] | None) -> Top | None:
        hit: Top | None = None if key is None else self.cache.get(key)
        return hit

    def _keep(self, key: tuple[Any, ...] | None, rb: RecBatch) -> Top:
        value = (rb.items[0], rb.scores[0])
        if key is not None:  # the key's feedback costs about 64 bytes an entry
            size = value[0].nbytes + value[1].nbytes + 64 * sum(len(p) for p in key[3])
            self.cache.put(key, value, size)
        return value

    def _prepare(
        self, user_idx: int | None, fb: UserFeedback | None, exclude_seen: bool
    ) -> Prepare:
        """What the batcher calls to build a user's current row and the items left out."""

        def build() -> tuple[sp.csr_matrix, sp.csr_matrix | None, sp.csr_matrix | None]:
            values, ts = self.overlay.row(user_idx, fb)
            return values, ts, self.overlay.exclusions(user_idx, fb, exclude_seen)

        return build
