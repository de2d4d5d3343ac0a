"""Serving logic over one verified bundle: one code path for every recommendation endpoint.

Known users without new feedback are answered from a per-(strategy, user) top-N cache
(computed on first use, or all at once by :meth:`Engine.warm`). Users with feedback since
training are re-scored from their updated history (fold-in), so a liked or disliked movie
leaves their list at once. Unknown users go down the configured fallback chain.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec.data.feedback import UserFeedback
from movierec.errors import MovierecError
from movierec.lifecycle.bundle import Bundle
from movierec.models.base import Recommender
from movierec.models.mf import BiasedMF
from movierec.models.topk import topk
from movierec.ranking.ranker import RankedRecommender, Reason

logger = logging.getLogger(__name__)

CACHE_N = 100
TRENDING_TOP = 50


class UnknownMovieError(MovierecError):
    """A movie id that is not in the catalog."""


class UnknownStrategyError(MovierecError):
    """A strategy the current bundle does not carry."""


@dataclass
class Item:
    """One recommended movie."""

    movie_id: int
    title: str
    year: int | None
    genres: list[str]
    score: float
    source: str
    reasons: list[str] = field(default_factory=list)


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
        cache_users: int = 200_000,
    ) -> None:
        self.bundle = bundle
        self.version = bundle.version
        self.fingerprint = str(bundle.manifest.get("data_fingerprint", {}).get("sha256", ""))
        self.run_id = str(bundle.manifest.get("mlflow_run_id") or "")
        self.fallback_chain = tuple(s for s in fallback_chain if s in bundle.models)
        m = bundle.movies
        ids = m["movie_id"].to_numpy().astype(np.int64)
        titles = m["title"].to_pylist()
        years = m["year"].to_pylist()
        genres = m["genres"].to_pylist()
        self.catalog: dict[int, tuple[str, int | None, list[str]]] = {
            int(i): (t, y, g or []) for i, t, y, g in zip(ids, titles, years, genres, strict=True)
        }
        self._search = [(t.lower(), int(i)) for i, t in zip(ids, titles, strict=True)]
        self.tmdb: dict[int, int] = {}
        if "tmdb_id" in m.column_names:
            tm = m["tmdb_id"].to_pylist()
            self.tmdb = {int(i): int(t) for i, t in zip(ids, tm, strict=True) if t is not None}
        first = next(iter(bundle.models.values()))  # every model holds the same training history
        self.history, self.history_ts = first.history, first.history_ts
        pop = np.bincount(self.history.indices, minlength=len(bundle.items)).astype(np.float64)
        self.popularity = pop
        self.pop_order = np.argsort(-pop, kind="stable")
        self.trending = set(self.pop_order[:TRENDING_TOP].tolist())
        self._pop_rank = {int(bundle.items.ids[i]): r for r, i in enumerate(self.pop_order)}
        self._user_pos = {int(u): i for i, u in enumerate(bundle.users.ids.tolist())}
        self._cache: OrderedDict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        #: Serialized JSON bodies of plain answers, by (strategy, user index, k).
        self.responses: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._cache_users = cache_users
        self._lock = threading.Lock()

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

    def movie(self, movie_id: int) -> tuple[str, int | None, list[str]]:
        """Title, year and genres of a catalog movie."""
        try:
            return self.catalog[movie_id]
        except KeyError:
            raise UnknownMovieError(f"movie {movie_id} is not in the catalog") from None

    def item_index(self, movie_ids: list[int]) -> tuple[np.ndarray, list[int]]:
        """Indices of known movies and the list of movie ids the model does not know."""
        idx = (
            self.bundle.items.index(np.asarray(movie_ids, dtype=np.int64))
            if movie_ids
            else np.zeros(0, np.int32)
        )
        unknown = [m for m, i in zip(movie_ids, idx.tolist(), strict=True) if i < 0]
        return idx[idx >= 0].astype(np.int64), unknown

    def _items(self, idx: np.ndarray, scores: np.ndarray, source: str) -> list[Item]:
        out = []
        for i, s in zip(idx.tolist(), scores.tolist(), strict=True):
            if i < 0:
                continue
            mid = int(self.bundle.items.ids[i])
            title, year, genres = self.catalog.get(mid, (str(mid), None, []))
            out.append(Item(mid, title, year, list(genres), float(s), source))
        return out

    def _history_row(
        self, user_idx: int | None, fb: UserFeedback | None
    ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """History (values, timestamps): training history plus feedback, minus dislikes."""
        n = len(self.bundle.items)
        items: dict[int, tuple[float, float]] = {}
        if user_idx is not None:
            row = self.history[user_idx]
            ts = self.history_ts[user_idx] if self.history_ts is not None else None
            for j, (i, v) in enumerate(zip(row.indices.tolist(), row.data.tolist(), strict=True)):
                items[i] = (v, float(ts.data[j]) if ts is not None else 0.0)
        if fb is not None:
            newest = max((t for _, t in items.values()), default=0.0) + 1.0
            pos, _ = self.item_index(list(fb.positives()))
            vals = fb.positives()
            for i in pos.tolist():
                items[i] = (float(vals[int(self.bundle.items.ids[i])]), newest)
            bad, _ = self.item_index(sorted(fb.disliked))
            for i in bad.tolist():
                items.pop(i, None)
        cols = np.fromiter(items.keys(), dtype=np.int64, count=len(items))
        vals_arr = np.array([v for v, _ in items.values()], dtype=np.float32)
        ts_arr = np.array([t for _, t in items.values()], dtype=np.float64)
        zeros = np.zeros(len(items), dtype=np.int64)
        return (
            sp.csr_matrix((vals_arr, (zeros, cols)), shape=(1, n)),
            sp.csr_matrix((ts_arr, (zeros, cols)), shape=(1, n)),
        )

    def _exclusions(
        self, user_idx: int | None, fb: UserFeedback | None, exclude_seen: bool
    ) -> sp.csr_matrix:
        n = len(self.bundle.items)
        cols: set[int] = set()
        if exclude_seen and user_idx is not None:
            cols |= set(self.history[user_idx].indices.tolist())
        if fb is not None:
            idx, _ = self.item_index(sorted(fb.touched()))
            cols |= set(idx.tolist())
        c = np.fromiter(cols, dtype=np.int64, count=len(cols))
        return sp.csr_matrix(
            (np.ones(c.size, np.float32), (np.zeros(c.size, np.int64), c)), shape=(1, n)
        )

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

    def cached_response(self, key: tuple[str, int, int]) -> bytes | None:
        """A serialized plain answer, if one was stored."""
        return self.responses.get(key)

    def store_response(self, key: tuple[str, int, int], body: bytes) -> None:
        """Keep a serialized plain answer (bounded like the top-N cache)."""
        with self._lock:
            self.responses[key] = body
            if len(self.responses) > self._cache_users:
                self.responses.popitem(last=False)

    # --------------------------------------------------------- recommendations
    def _cached(self, strategy: str, user_idx: int) -> tuple[np.ndarray, np.ndarray]:
        key = (strategy, user_idx)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        rb = self.model(strategy).recommend([user_idx], CACHE_N)
        value = (rb.items[0], rb.scores[0])
        with self._lock:
            self._cache[key] = value
            if len(self._cache) > self._cache_users:
                self._cache.popitem(last=False)
        return value

    def warm(self, strategy: str, batch: int = 512) -> int:
        """Fill the top-N cache of every known user for one strategy (batched)."""
        model = self.model(strategy)
        n = model.n_users
        for start in range(0, n, batch):
            users = np.arange(start, min(n, start + batch))
            rb = model.recommend(users, CACHE_N)
            with self._lock:
                for row, u in enumerate(users.tolist()):
                    self._cache[(strategy, u)] = (rb.items[row], rb.scores[row])
        return n

    def scores_for(
        self, strategy: str, user_idx: int | None, fb: UserFeedback | None
    ) -> np.ndarray:
        """Full score vector of a user under a strategy (fold-in when history changed)."""
        model = self.model(strategy)
        if user_idx is not None and fb is None:
            return model.score_users(np.array([user_idx]))[0]
        values, ts = self._history_row(user_idx, fb)
        return model.score_rows(values, ts)[0]

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
            return Answer(user_id, strategy, base, False, self._items(items[:k], scores[:k], base))
        scores = self.scores_for(base, user_idx, feedback)
        source = base if feedback is None else f"{base}_foldin"
        if strategy == "mixed":
            a = 0.8 if alpha is None else alpha
            model_part, pop_part = self._normalise(scores), self._normalise(self.popularity)
            ok = np.isfinite(model_part) & np.isfinite(pop_part)
            scores = np.full(scores.shape, -np.inf, dtype=np.float32)
            scores[ok] = a * model_part[ok] + (1 - a) * pop_part[ok]
            source = f"mixed({base},popularity,alpha={a:g})"
        rb = topk(
            scores[None, :].copy(), k, exclude=self._exclusions(user_idx, feedback, exclude_seen)
        )
        return Answer(
            user_id, strategy, source, False, self._items(rb.items[0], rb.scores[0], source)
        )

    def _fallback(
        self, user_id: int | None, k: int, fb: UserFeedback | None, strategy: str
    ) -> Answer:
        for name in self.fallback_chain:
            model = self.model(name)
            scores = model.score_history(
                sp.csr_matrix((1, len(self.bundle.items)), dtype=np.float32)
            )[0]
            rb = topk(scores[None, :].copy(), k, exclude=self._exclusions(None, fb, False))
            source = f"{name}_fallback"
            return Answer(
                user_id, strategy, source, True, self._items(rb.items[0], rb.scores[0], source)
            )
        order = self.pop_order[:k]
        return Answer(
            user_id,
            strategy,
            "popularity_fallback",
            True,
            self._items(order, self.popularity[order], "popularity_fallback"),
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
                out[pos] = Answer(
                    user_ids[pos],
                    strategy,
                    strategy,
                    False,
                    self._items(rb.items[row], rb.scores[row], strategy),
                )
        for pos in np.flatnonzero(idx < 0).tolist():
            out[pos] = self._fallback(user_ids[pos], k, None, strategy)
        return [a for a in out if a is not None]

    def cold(self, liked: list[int], disliked: list[int], k: int, strategy: str) -> Answer:
        """Fold-in of a new user from liked movies; liked and disliked movies are excluded."""
        fb = UserFeedback()
        for m in liked:
            fb.apply(m, "like", None)
        for m in disliked:
            fb.apply(m, "dislike", None)
        _, unknown = self.item_index(liked + disliked)
        if not self.item_index(liked)[0].size:
            ans = self._fallback(None, k, fb, strategy)
        else:
            self.model(strategy)
            scores = self.scores_for(strategy, None, fb)
            rb = topk(scores[None, :].copy(), k, exclude=self._exclusions(None, fb, True))
            ans = Answer(
                None,
                strategy,
                f"{strategy}_foldin",
                False,
                self._items(rb.items[0], rb.scores[0], f"{strategy}_foldin"),
            )
        ans.unknown_movies = unknown
        return ans

    def similar(self, movie_id: int, k: int, strategy: str) -> list[Item]:
        """Movies most similar to one movie under a strategy's item similarity."""
        self.movie(movie_id)
        idx, _ = self.item_index([movie_id])
        if not idx.size:
            return []
        rb = self.model(strategy).similar_items(idx, k)
        return self._items(rb.items[0], rb.scores[0], f"{strategy}_similar")

    def popular(self, k: int, genre: str | None) -> list[Item]:
        """Most interacted-with movies, optionally of one genre."""
        out: list[Item] = []
        for i in self.pop_order.tolist():
            mid = int(self.bundle.items.ids[i])
            title, year, genres = self.catalog.get(mid, (str(mid), None, []))
            if genre is not None and genre.lower() not in (g.lower() for g in genres):
                continue
            out.append(
                Item(mid, title, year, list(genres), float(self.popularity[i]), "popularity")
            )
            if len(out) >= k:
                break
        return out

    def search(self, q: str, limit: int) -> list[dict[str, Any]]:
        """Title search (case-insensitive substring), most popular first."""
        needle = q.strip().lower()
        hits = [mid for t, mid in self._search if needle in t]
        hits.sort(key=lambda m: self._pop_rank.get(m, 1 << 30))
        return [self.describe(m) for m in hits[:limit]]

    def describe(self, movie_id: int) -> dict[str, Any]:
        """Catalog entry of a movie."""
        title, year, genres = self.movie(movie_id)
        idx, _ = self.item_index([movie_id])
        count = int(self.popularity[idx[0]]) if idx.size else 0
        return {
            "movie_id": movie_id,
            "title": title,
            "year": year,
            "genres": list(genres),
            "interactions": count,
            "tmdb_id": self.tmdb.get(movie_id),
        }

    def predict(self, user_id: int, movie_id: int) -> tuple[float, str]:
        """Predicted rating from ``mf`` (item bias alone for an unknown user)."""
        self.movie(movie_id)
        model = self.model("mf")
        assert isinstance(model, BiasedMF)
        u = int(self.bundle.users.index(user_id)[0])
        i = int(self.bundle.items.index(movie_id)[0])
        pred = float(model.predict(np.array([u]), np.array([i]))[0])
        source = "mf" if u >= 0 and i >= 0 else ("mf_item_bias" if i >= 0 else "mf_global_mean")
        return pred, source

    def explain(self, answer: Answer, user_id: int | None, feedback: UserFeedback | None) -> None:
        """Add reasons to each item: similar history item, trending, matching genres.

        The ``ranked`` strategy gives its own reasons (from its candidate sources and
        features); other strategies are explained from item similarity and popularity.
        """
        u = int(self.bundle.users.index(user_id)[0]) if user_id is not None else -1
        values, ts = self._history_row(u if u >= 0 else None, feedback)
        name = (
            answer.strategy
            if answer.strategy in self.bundle.models
            else self.bundle.default_strategy
        )
        base = self.model(name)
        liked_boost = feedback is not None and bool(feedback.liked) and not answer.fallback
        if isinstance(base, RankedRecommender) and not answer.fallback and values.nnz:
            idx = self.bundle.items.index(np.array([it.movie_id for it in answer.items]))
            ok = idx >= 0
            why = base.explain(values, ts, idx[ok])
            it_ok = [it for it, good in zip(answer.items, ok.tolist(), strict=True) if good]
            names = base.store.genre_names if base.store is not None else ()
            for item, rs in zip(it_ok, why, strict=True):
                item.reasons = [self._reason_text(r, names) for r in rs]
                if liked_boost:
                    item.reasons.append("Boosted by your likes")
                item.reasons = item.reasons or ["Ranked for you from several models"]
            return
        hist = values.indices
        taste: dict[str, float] = {}
        for i in hist.tolist():
            for g in self.catalog.get(int(self.bundle.items.ids[i]), ("", None, []))[2]:
                taste[g] = taste.get(g, 0.0) + 1.0
        top_genres = {g for g, _ in sorted(taste.items(), key=lambda x: -x[1])[:3]}
        for item in answer.items:
            reasons: list[str] = []
            idx, _ = self.item_index([item.movie_id])
            if hist.size and idx.size and not answer.fallback:
                try:
                    sims = base.item_similarity(idx)[0][hist]
                    j = int(np.argmax(sims))
                    if np.isfinite(sims[j]) and sims[j] > 0:
                        reasons.append(f"Because you liked {self._title(int(hist[j]))}")
                except NotImplementedError:
                    pass
            if idx.size and int(idx[0]) in self.trending:
                reasons.append("Trending now")
            match = [g for g in item.genres if g in top_genres]
            if match:
                reasons.append(f"Matches your genres: {', '.join(match)}")
            if liked_boost:
                reasons.append("Boosted by your likes")
            item.reasons = reasons or ["Popular with people like you"]

    def _title(self, item_idx: int) -> str:
        return self.catalog.get(int(self.bundle.items.ids[item_idx]), ("?", None, []))[0]

    def _reason_text(self, reason: Reason, genre_names: tuple[str, ...]) -> str:
        if reason.code == "because_watched" and reason.item is not None:
            return f"Because you watched {self._title(reason.item)}"
        if reason.code == "trending":
            return "Trending now"
        if reason.code == "genres":
            names = [genre_names[g] for g in reason.genres if g < len(genre_names)]
            return f"Matches your genres: {', '.join(names)}"
        return reason.code
