"""The bundle's movie catalog: titles, years, genres, TMDB ids, popularity and title search."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from movierec.data.vocab import Vocabulary
from movierec.errors import MovierecError
from movierec.lifecycle.bundle import Bundle

#: The most popular items, called "trending" in explanations.
TRENDING_TOP = 50
#: Lists of movie ids up to this long are looked up one by one (else in one vectorised pass).
FEW_IDS = 32
#: JSON bytes of an item besides its title and genres (keys, ids, year, score, source).
ITEM_JSON_OVERHEAD = 160


class UnknownMovieError(MovierecError):
    """A movie id that is not in the catalog."""


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


class MovieCatalog:
    """Movie metadata and popularity of one bundle, indexed once at load."""

    def __init__(self, bundle: Bundle, popularity: np.ndarray) -> None:
        self.items: Vocabulary = bundle.items
        m = bundle.movies
        ids = m["movie_id"].to_numpy().astype(np.int64)
        titles = m["title"].to_pylist()
        years = m["year"].to_pylist()
        genres = m["genres"].to_pylist()
        self.movies: dict[int, tuple[str, int | None, list[str]]] = {
            int(i): (t, y, g or []) for i, t, y, g in zip(ids, titles, years, genres, strict=True)
        }
        self._search = [(t.lower(), int(i)) for i, t in zip(ids, titles, strict=True)]
        self.tmdb: dict[int, int] = {}
        if "tmdb_id" in m.column_names:
            tm = m["tmdb_id"].to_pylist()
            self.tmdb = {int(i): int(t) for i, t in zip(ids, tm, strict=True) if t is not None}
        #: Upper bound of one recommended item's JSON size (for work budgets before work).
        self.max_item_bytes = ITEM_JSON_OVERHEAD + max(
            (len(t.encode()) + sum(len(x) + 4 for x in g) for t, _, g in self.movies.values()),
            default=0,
        )
        self.popularity = popularity
        self.pop_order = np.argsort(-popularity, kind="stable")
        self.trending = set(self.pop_order[:TRENDING_TOP].tolist())
        self._pop_rank = {int(self.items.ids[i]): r for r, i in enumerate(self.pop_order)}
        #: Item index of each movie id: a request names a few movies, one lookup each.
        self._index = {int(m): i for i, m in enumerate(self.items.ids.tolist())}

    def movie(self, movie_id: int) -> tuple[str, int | None, list[str]]:
        """Title, year and genres of a catalog movie."""
        try:
            return self.movies[movie_id]
        except KeyError:
            raise UnknownMovieError(f"movie {movie_id} is not in the catalog") from None

    def item_index(self, movie_ids: list[int]) -> tuple[np.ndarray, list[int]]:
        """Indices of known movies and the list of movie ids the model does not know."""
        if len(movie_ids) <= FEW_IDS:  # a request's few movies: dictionary lookups
            found = [self._index.get(m, -1) for m in movie_ids]
            known = np.array([i for i in found if i >= 0], np.int64)
            return known, [m for m, i in zip(movie_ids, found, strict=True) if i < 0]
        idx = (
            self.items.index(np.asarray(movie_ids, dtype=np.int64))
            if movie_ids
            else np.zeros(0, np.int32)
        )
        unknown = [m for m, i in zip(movie_ids, idx.tolist(), strict=True) if i < 0]
        return idx[idx >= 0].astype(np.int64), unknown

    def title(self, item_idx: int) -> str:
        """Title of an item index."""
        return self.movies.get(int(self.items.ids[item_idx]), ("?", None, []))[0]

    def genres_of(self, item_idx: int) -> list[str]:
        """Genres of an item index."""
        return self.movies.get(int(self.items.ids[item_idx]), ("", None, []))[2]

    def to_items(self, idx: np.ndarray, scores: np.ndarray, source: str) -> list[Item]:
        """Items of indices (negative indices skipped) with their scores and source."""
        out = []
        for i, s in zip(idx.tolist(), scores.tolist(), strict=True):
            if i < 0:
                continue
            mid = int(self.items.ids[i])
            title, year, genres = self.movies.get(mid, (str(mid), None, []))
            out.append(Item(mid, title, year, list(genres), float(s), source))
        return out

    def popular(self, k: int, genre: str | None) -> list[Item]:
        """Most interacted-with movies, optionally of one genre."""
        out: list[Item] = []
        for i in self.pop_order.tolist():
            mid = int(self.items.ids[i])
            title, year, genres = self.movies.get(mid, (str(mid), None, []))
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
