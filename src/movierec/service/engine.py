"""Serving logic over one verified bundle: one code path for every recommendation endpoint.

Known users without new feedback are answered from a per-(strategy, user) top-N cache
(computed on first use, or all at once by :meth:`Engine.warm`). Users with feedback since
training are re-scored from their updated history (fold-in), so a liked or disliked movie
leaves their list at once. Unknown users go down the configured fallback chain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec.data.user_feedback import UserFeedback
from movierec.errors import MovierecError
from movierec.lifecycle.bundle import Bundle
from movierec.models.base import Recommender
from movierec.models.mf import BiasedMF
from movierec.models.topk import topk
from movierec.service.batching import THREADS
from movierec.service.cache import ByteLRU
from movierec.service.catalog import Item, MovieCatalog
from movierec.service.explain import explain_items
from movierec.service.fold_in import FoldIn
from movierec.service.overlay import HistoryOverlay
from movierec.service.shared_cache import SharedAnswers

logger = logging.getLogger(__name__)

CACHE_N = 100  #: items of a kept top-N
#: First element of the key of a serialized answer of a feedback state (no strategy's name).
FEEDBACK_KEY = "+feedback"


class UnknownStrategyError(MovierecError):
    """A strategy the current bundle does not carry."""


@dataclass
class Answer:
    """A recommendation list and where it came from."""

    user_id: int | None
    strategy: str
    source: str
    fallback: bool
    items: list[Item]
    unknown_movies: list[int] = field(default_factory=list)


class Engine:
    """Everything the routes need from a bundle, precomputed once per bundle."""

    def __init__(
        self,
        bundle: Bundle,
        fallback_chain: tuple[str, ...] = ("popularity",),
        cache_bytes: int = 256 * 1024 * 1024,
        cache_feedback: bool = True,
        threads: int = THREADS,
    ) -> None:
        self.bundle = bundle
        self.version = bundle.version
        #: Answers shared with other workers (Redis), when configured.
        self.shared: SharedAnswers | None = None
        self.fingerprint = str(bundle.manifest.get("data_fingerprint", {}).get("sha256", ""))
        self.run_id = str(bundle.manifest.get("mlflow_run_id") or "")
        self.fallback_chain = tuple(s for s in fallback_chain if s in bundle.models)
        first = next(iter(bundle.models.values()))  # every model holds the same training history
        history = first.history
        pop = np.bincount(history.indices, minlength=len(bundle.items)).astype(np.float64)
        self.catalog = MovieCatalog(bundle, pop)
        self.overlay = HistoryOverlay(history, first.history_ts, self.catalog)
        self._user_pos = {int(u): i for i, u in enumerate(bundle.users.ids.tolist())}
        #: Top-N arrays by (strategy, user index) and serialized plain answers by (strategy,
        #: user index, k), under one byte budget.
        self.cache: ByteLRU[Any] = ByteLRU(cache_bytes)
        #: Also keep the top-N of users with feedback, keyed by their whole feedback state.
        self.cache_feedback = cache_feedback
        self.fold_in = FoldIn(  # per-request top-N: rows batched, kept per feedback state
            self.model, self.overlay, self.cache, cache_feedback, CACHE_N, threads
        )
        self.batcher = self.fold_in.batcher  #: per-request rows, batched per model
        self.raw_headers: list[tuple[bytes, bytes]] | None = None  #: provenance, by the renderer

    # ------------------------------------------------------------------ helpers
    def model(self, strategy: str) -> Recommender:
        """The model behind a strategy."""
        try:
            return self.bundle.models[strategy]
        except KeyError:
            raise UnknownStrategyError(
                f"strategy {strategy!r} is not in model {self.version}; "
                f"available: {', '.join(sorted(self.bundle.models))}"
            ) from None

    @staticmethod
    def _normalise(scores: np.ndarray) -> np.ndarray:
        finite = np.isfinite(scores)
        out = np.full(scores.shape, -np.inf, dtype=np.float32)
        if finite.any():
            lo, hi = scores[finite].min(), scores[finite].max()
            out[finite] = (scores[finite] - lo) / (hi - lo) if hi > lo else 1.0
        return out

    def user_index(self, user_id: int) -> int:
        """Index of a known user, or -1."""
        return self._user_pos.get(user_id, -1)

    def cached_response(self, key: tuple[Any, ...]) -> bytes | None:
        """A serialized answer: this worker's, else (a plain one) one another worker shared."""
        body: bytes | None = self.cache.get(key)
        if body is None and self.shared is not None and key[0] != FEEDBACK_KEY:
            body = self.shared.get(self.version, key)
            if body is not None:
                self.cache.put(key, body, len(body))
        return body

    def store_response(self, key: tuple[Any, ...], body: bytes) -> None:
        """Keep a serialized answer (within the cache's byte budget); share a plain one.

        The answer of a feedback state (key ``(FEEDBACK_KEY, …, state)``) stays this
        worker's; its key's feedback is counted at about 64 bytes an entry.
        """
        if key[0] == FEEDBACK_KEY:
            self.cache.put(key, body, len(body) + 64 * sum(len(p) for p in key[-1]))
            return
        self.cache.put(key, body, len(body))
        if self.shared is not None:
            self.shared.put(self.version, key, body)

    def forget_users(self, user_ids: list[int]) -> None:
        """Drop shared answers of users whose history changed (feedback, stream events)."""
        if self.shared is None:
            return
        idx = [i for i in (self.user_index(u) for u in user_ids) if i >= 0]
        self.shared.forget(self.version, idx)

    def release(self) -> None:
        """Free the caches (this engine was replaced by a reload)."""
        self.cache.clear()

    # --------------------------------------------------------- recommendations
    def has_top(self, strategy: str, user_idx: int) -> bool:
        """Whether a known user's top-N of a strategy is cached (answering costs no scoring)."""
        return self.cache.get((strategy, user_idx)) is not None

    def _cached(self, strategy: str, user_idx: int) -> tuple[np.ndarray, np.ndarray]:
        key = (strategy, user_idx)
        hit: tuple[np.ndarray, np.ndarray] | None = self.cache.get(key)
        if hit is not None:
            return hit
        rb = self.model(strategy).recommend([user_idx], CACHE_N)
        value = (rb.items[0], rb.scores[0])
        self.cache.put(key, value, value[0].nbytes + value[1].nbytes)
        return value

    def most_active(self, n: int) -> np.ndarray:
        """Indices of the ``n`` users with the longest training histories, longest first."""
        sizes = np.diff(self.overlay.history.indptr)
        n = min(n, sizes.size)
        if n <= 0:
            return np.zeros(0, np.int64)
        top = np.argpartition(-sizes, n - 1)[:n] if n < sizes.size else np.arange(sizes.size)
        return top[np.argsort(-sizes[top], kind="stable")].astype(np.int64)

    def warm(
        self,
        strategy: str,
        users: np.ndarray | None = None,
        batch: int = 512,
        stop: Callable[[], bool] | None = None,
    ) -> int:
        """Fill the top-N cache of ``users`` (default: every known user) for one strategy.

        Batched; ``stop`` is asked before each batch. Returns how many users were warmed.
        """
        model = self.model(strategy)
        todo = np.arange(model.n_users) if users is None else np.asarray(users, np.int64)
        done = 0
        for start in range(0, todo.size, batch):
            if stop is not None and stop():
                break
            chunk = todo[start : start + batch]
            rb = model.recommend(chunk, CACHE_N)
            for row, u in enumerate(chunk.tolist()):
                value = (rb.items[row], rb.scores[row])
                self.cache.put((strategy, u), value, value[0].nbytes + value[1].nbytes)
            done += chunk.size
        return done

    def scores_for(
        self, strategy: str, user_idx: int | None, fb: UserFeedback | None
    ) -> np.ndarray:
        """Full score vector of a user under a strategy (fold-in when history changed)."""
        model = self.model(strategy)
        if user_idx is not None and fb is None:
            return model.score_users(np.array([user_idx]))[0]
        values, ts = self.overlay.row(user_idx, fb)
        return self.batcher.score(model, values, ts)

    def recommend(
        self,
        user_id: int,
        k: int,
        strategy: str,
        *,
        exclude_seen: bool = True,
        feedback: UserFeedback | None = None,
        alpha: float | None = None,
    ) -> Answer:
        """Top-k for a user id under a strategy (``mixed`` blends with popularity by ``alpha``)."""
        base = self.bundle.default_strategy if strategy == "mixed" else strategy
        self.model(base)
        u = self.user_index(user_id)
        user_idx = u if u >= 0 else None
        if user_idx is None and (feedback is None or not feedback.positives()):
            return self._fallback(user_id, k, feedback, base)
        if strategy != "mixed" and feedback is None and exclude_seen and k <= CACHE_N:
            assert user_idx is not None
            items, scores = self._cached(base, user_idx)
            return self._answer(user_id, strategy, base, items[:k], scores[:k])
        source = base if feedback is None else f"{base}_foldin"
        if strategy != "mixed" and feedback is not None:  # per request: batched with others
            items, scores = self.fold_in.top(base, user_idx, feedback, exclude_seen, k)
            return self._answer(user_id, strategy, source, items[:k], scores[:k])
        exclude = self.overlay.exclusions(user_idx, feedback, exclude_seen)
        scores = self.scores_for(base, user_idx, feedback)
        if strategy == "mixed":
            a = 0.8 if alpha is None else alpha
            model_part, pop_part = self._normalise(scores), self._normalise(self.catalog.popularity)
            ok = np.isfinite(model_part) & np.isfinite(pop_part)
            scores = np.full(scores.shape, -np.inf, dtype=np.float32)
            scores[ok] = a * model_part[ok] + (1 - a) * pop_part[ok]
            source = f"mixed({base},popularity,alpha={a:g})"
        rb = topk(scores[None, :].copy(), k, exclude=exclude)
        return self._answer(user_id, strategy, source, rb.items[0], rb.scores[0])

    def scores_afresh(self, user_id: int, strategy: str, feedback: UserFeedback | None) -> bool:
        """Whether :meth:`recommend` scores this request's row (the batcher's path).

        That is a user with feedback since training (known, or with a liked movie), under a
        strategy other than ``mixed``; :meth:`recommend_afresh` answers it on the event loop.
        """
        if strategy == "mixed" or feedback is None:
            return False
        return self.user_index(user_id) >= 0 or bool(feedback.positives())

    async def recommend_afresh(
        self, user_id: int, k: int, strategy: str, feedback: UserFeedback, exclude_seen: bool
    ) -> Answer:
        """:meth:`recommend` of a request :meth:`scores_afresh` accepts, awaited on the loop.

        The same answer: the row joins the same batches; only the waiting differs (no worker
        thread is woken for the request).
        """
        u = self.user_index(user_id)
        user_idx = u if u >= 0 else None
        items, scores = await self.fold_in.top_async(strategy, user_idx, feedback, exclude_seen, k)
        return self._answer(user_id, strategy, f"{strategy}_foldin", items[:k], scores[:k])

    def _answer(
        self,
        user_id: int | None,
        strategy: str,
        source: str,
        items: np.ndarray,
        scores: np.ndarray,
        fallback: bool = False,
    ) -> Answer:
        return Answer(
            user_id, strategy, source, fallback, self.catalog.to_items(items, scores, source)
        )

    def _fallback(
        self, user_id: int | None, k: int, fb: UserFeedback | None, strategy: str
    ) -> Answer:
        """The first entry of the chain that can score a user without history answers.

        An entry that cannot (its scores are NaN: it needs a history) is passed over; after
        the chain, interaction counts do. The answer's source names the entry that served it.
        """
        empty = sp.csr_matrix((1, self.overlay.n_items), dtype=np.float32)
        exclude = self.overlay.exclusions(None, fb, False)
        for name in self.fallback_chain:
            scores = self.model(name).score_rows(empty)
            rb = topk(np.array(scores, dtype=np.float32, copy=True), k, exclude=exclude)
            if (rb.items[0] < 0).all():
                logger.debug("fallback %s cannot score a user without history", name)
                continue
            keep = rb.items[0] >= 0
            source = f"{name}_fallback"
            items, top = rb.items[0][keep], rb.scores[0][keep]
            return self._answer(user_id, strategy, source, items, top, True)
        order = self.catalog.pop_order[:k]
        return self._answer(
            user_id, strategy, "popularity_fallback", order, self.catalog.popularity[order], True
        )

    def batch(self, user_ids: list[int], k: int, strategy: str) -> list[Answer]:
        """Known users scored as one matrix product; unknown ones take the fallback chain."""
        model = self.model(strategy)
        idx = self.bundle.users.index(np.asarray(user_ids, dtype=np.int64))
        known = np.flatnonzero(idx >= 0)
        out: list[Answer | None] = [None] * len(user_ids)
        if known.size:
            rb = model.recommend(idx[known].astype(np.int64), k)
            for row, pos in enumerate(known.tolist()):
                out[pos] = self._answer(
                    user_ids[pos], strategy, strategy, rb.items[row], rb.scores[row]
                )
        for pos in np.flatnonzero(idx < 0).tolist():
            out[pos] = self._fallback(user_ids[pos], k, None, strategy)
        return [a for a in out if a is not None]

    def cold(self, liked: list[int], disliked: list[int], k: int, strategy: str) -> Answer:
        """Fold-in of a new user from liked movies; liked and disliked movies are excluded."""
        fb, unknown, any_known = self._cold_feedback(liked, disliked)
        if not any_known:
            ans = self._fallback(None, k, fb, strategy)
        else:
            items, scores = self.fold_in.top(strategy, None, fb, True, k)
            ans = self._answer(None, strategy, f"{strategy}_foldin", items[:k], scores[:k])
        ans.unknown_movies = unknown
        return ans

    def knows_any(self, movie_ids: list[int]) -> bool:
        """Whether a cold start from these liked movies is a fold-in (one of them is known)."""
        return bool(self.catalog.item_index(movie_ids)[0].size)

    async def cold_async(
        self, liked: list[int], disliked: list[int], k: int, strategy: str
    ) -> Answer:
        """:meth:`cold` with the fold-in row awaited on the event loop (the same answer).

        For liked movies :meth:`knows_any` accepts (else :meth:`cold` takes the fallback
        chain, whose models are scored where the caller runs).
        """
        fb, unknown, any_known = self._cold_feedback(liked, disliked)
        if not any_known:
            raise ValueError("no liked movie is known: use cold (the fallback chain)")
        items, scores = await self.fold_in.top_async(strategy, None, fb, True, k)
        ans = self._answer(None, strategy, f"{strategy}_foldin", items[:k], scores[:k])
        ans.unknown_movies = unknown
        return ans

    def _cold_feedback(
        self, liked: list[int], disliked: list[int]
    ) -> tuple[UserFeedback, list[int], bool]:
        """A new user's feedback, the movies the bundle lacks, and whether a liked one is known."""
        fb = UserFeedback()
        for signal, movies in (("like", liked), ("dislike", disliked)):
            for m in movies:
                fb.apply(m, signal, None)
        known, unknown = self.catalog.item_index(liked)
        return fb, unknown + self.catalog.item_index(disliked)[1], bool(known.size)

    def similar(self, movie_id: int, k: int, strategy: str) -> list[Item]:
        """Movies most similar to one movie under a strategy's item similarity."""
        self.catalog.movie(movie_id)
        idx, _ = self.catalog.item_index([movie_id])
        if not idx.size:
            return []
        rb = self.model(strategy).similar_items(idx, k)
        return self.catalog.to_items(rb.items[0], rb.scores[0], f"{strategy}_similar")

    def predict(self, user_id: int, movie_id: int) -> tuple[float, str]:
        """Predicted rating from ``mf`` (item bias alone for an unknown user)."""
        self.catalog.movie(movie_id)
        model = self.model("mf")
        assert isinstance(model, BiasedMF)
        u = int(self.bundle.users.index(user_id)[0])
        i = int(self.bundle.items.index(movie_id)[0])
        pred = float(model.predict(np.array([u]), np.array([i]))[0])
        source = "mf" if u >= 0 and i >= 0 else ("mf_item_bias" if i >= 0 else "mf_global_mean")
        return pred, source

    def explain(self, answer: Answer, user_id: int | None, feedback: UserFeedback | None) -> None:
        """Add reasons to each item of an answer (see :func:`explain_items`)."""
        u = self.user_index(user_id) if user_id is not None else -1
        values, ts = self.overlay.row(u if u >= 0 else None, feedback)
        name = (
            answer.strategy
            if answer.strategy in self.bundle.models
            else self.bundle.default_strategy
        )
        explain_items(
            answer.items,
            self.model(name),
            self.catalog,
            values,
            ts,
            fallback=answer.fallback,
            liked_boost=feedback is not None and bool(feedback.liked) and not answer.fallback,
        )
