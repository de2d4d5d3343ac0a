"""MovieLens-shaped synthetic data, in the ml-latest CSV layout, up to ML-32M size.

The generator has latent structure that models can learn: every movie belongs to one of
``clusters`` taste clusters (which also decide its genres), every user has a Dirichlet taste
over clusters, picks movies mostly from clusters they like (popularity within the cluster
follows a power law) and rates them higher when they like the cluster. User activity is
heavy-tailed (at least 20 ratings each, as in MovieLens); timestamps follow each user's
active period. Users are generated in blocks and written as they go, so memory stays bounded.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from movierec.data.synth_words import ADJECTIVES, GENRES, NOUNS, TAGS

logger = logging.getLogger(__name__)

_RATING_LABELS = pa.array([f"{v / 2:.1f}" for v in range(1, 11)])
_T0 = 820_454_400  # 1996-01-01
_T1 = 1_538_265_600  # 2018-09-30

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class SynthConfig:
    """Size and shape of a synthetic release.

    Attributes:
        ratings: Exact number of rating rows.
        users: Number of users (default: about ratings / 160, as in ML-25M).
        movies: Number of movies (default: grows with sqrt(ratings), capped at ML-32M's 87k).
        clusters: Number of latent taste clusters.
        seed: Random seed; the same seed gives the same files.
        tag_rate: Tags per rating.
    """

    ratings: int
    users: int | None = None
    movies: int | None = None
    clusters: int = 24
    seed: int = 42
    tag_rate: float = 0.001

    def n_users(self) -> int:
        """Resolved user count."""
        if self.users is not None:
            return self.users
        return int(np.clip(self.ratings // 160, 5, 10_000_000))

    def n_movies(self) -> int:
        """Resolved movie count."""
        if self.movies is not None:
            return self.movies
        return int(np.clip(np.sqrt(self.ratings) * 20, 50, 87_585))


@dataclass(frozen=True)
class _Catalog:
    movie_ids: np.ndarray
    cluster: np.ndarray
    pop_order: np.ndarray  # items grouped by cluster
    cum: np.ndarray  # cumulative popularity over pop_order
    cluster_lo: np.ndarray  # cumulative mass where each cluster starts
    cluster_hi: np.ndarray
    bias: np.ndarray


def _activity(rng: np.random.Generator, n_users: int, total: int, cap: int) -> np.ndarray:
    lo = max(1, min(20, total // n_users))
    counts = np.full(n_users, lo, dtype=np.int64)
    rest = total - counts.sum()
    if rest < 0:
        raise ValueError(f"{total} ratings cannot give {n_users} users {lo} ratings each")
    w = rng.pareto(1.3, n_users) + 1e-3
    for _ in range(100):
        if rest == 0:
            break
        room = cap - counts
        w_open = np.where(room > 0, w, 0.0)
        if w_open.sum() <= 0:
            raise ValueError("too many ratings for this many users and movies")
        want = w_open / w_open.sum() * rest
        add = np.minimum(np.floor(want).astype(np.int64), room)
        left = int(rest - add.sum())
        if left > 0:  # largest remainders first, among users with room left
            frac = np.where(room - add > 0, want - np.floor(want), -1.0)
            top = np.argsort(-frac)[:left]
            add[top[frac[top] >= 0]] += 1
        counts += add
        rest = total - int(counts.sum())
    if rest != 0:
        raise ValueError("could not distribute ratings over users")
    return counts


def _catalog(rng: np.random.Generator, n_items: int, k: int) -> _Catalog:
    ids = np.sort(rng.choice(np.arange(1, n_items * 3 + 1), size=n_items, replace=False))
    cluster = rng.integers(0, k, n_items)
    ranks = rng.permutation(n_items) + 1
    pop = 1.0 / ranks.astype(np.float64) ** 0.9
    order = np.lexsort((-pop, cluster))
    cum = np.cumsum(pop[order])
    counts = np.bincount(cluster, minlength=k)
    ends = np.cumsum(counts)
    starts = ends - counts
    lo = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    lo[starts == 0] = 0.0
    hi = cum[np.maximum(ends - 1, 0)]
    bias = 0.35 * np.log(pop / pop.mean()) / np.log(n_items + 1) + rng.normal(0, 0.3, n_items)
    return _Catalog(ids.astype(np.int64), cluster, order, cum, lo, hi, bias)


def _sample_items(
    rng: np.random.Generator, cat: _Catalog, taste_cum: np.ndarray, users: np.ndarray
) -> np.ndarray:
    """One popularity-in-cluster draw per entry of ``users`` (block-local user indices)."""
    n = users.shape[0]
    k = taste_cum.shape[1]
    # row u of the taste CDF lives in [u, u + 1] of one flat sorted array: one searchsorted
    flat = (taste_cum + np.arange(taste_cum.shape[0])[:, None]).ravel()
    pos_c = np.searchsorted(flat, users + rng.random(n) * 0.999999)
    clusters = np.minimum(pos_c - users * k, k - 1)
    explore = rng.random(n) < 0.2
    lo = np.where(explore, 0.0, cat.cluster_lo[clusters])
    hi = np.where(explore, cat.cum[-1], cat.cluster_hi[clusters])
    pos = np.searchsorted(cat.cum, lo + rng.random(n) * (hi - lo))
    return cat.pop_order[np.minimum(pos, cat.cum.shape[0] - 1)]


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort + adjacent compare: faster than np.unique here)."""
    a = np.sort(a)
    if a.size < 2:
        return a
    keep = np.empty(a.shape[0], dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _block(
    rng: np.random.Generator, cat: _Catalog, counts: np.ndarray, taste: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items for a block of users: returns sorted (local user, item) arrays."""
    n_items = cat.movie_ids.shape[0]
    taste_cum = np.cumsum(taste, axis=1)
    need = counts.copy()
    taken = np.zeros(0, dtype=np.int64)
    for attempt in range(20):
        if need.sum() == 0:
            break
        draws = np.ceil(need * (1.6 if attempt == 0 else 3.0)).astype(np.int64) + 2
        users = np.repeat(np.arange(counts.shape[0]), draws)
        if attempt < 3:
            items = _sample_items(rng, cat, taste_cum, users)
        else:
            items = rng.integers(0, n_items, users.shape[0])
        keys = _sorted_unique(users.astype(np.int64) * n_items + items)
        if taken.size:
            keys = keys[~np.isin(keys, taken, assume_unique=True)]
        u = keys // n_items
        # keep a random subset of at most need[u] new items per user
        prio = rng.random(keys.shape[0])
        order = np.lexsort((prio, u))
        u_sorted = u[order]
        first = np.searchsorted(u_sorted, u_sorted, side="left")
        rank = np.arange(u_sorted.shape[0]) - first
        chosen = np.sort(keys[order[rank < need[u_sorted]]])
        taken = _sorted_unique(np.concatenate([taken, chosen]))
        need -= np.bincount(chosen // n_items, minlength=counts.shape[0])
    if need.sum() != 0:
        raise RuntimeError("could not draw enough distinct movies; use more movies")
    return taken // n_items, taken % n_items


def generate(out: Path, config: SynthConfig, progress: ProgressFn | None = None) -> dict[str, int]:
    """Write ``ratings.csv``, ``movies.csv``, ``links.csv``, ``tags.csv`` and a README into ``out``.

    Returns:
        Row counts per file.
    """
    rng = np.random.default_rng(config.seed)
    n_users, n_items, k = config.n_users(), config.n_movies(), config.clusters
    out.mkdir(parents=True, exist_ok=True)
    cat = _catalog(rng, n_items, k)
    counts = _activity(rng, n_users, config.ratings, cap=max(1, n_items // 3))
    taste_alpha = np.full(k, 0.25)
    user_bias = rng.normal(0.0, 0.35, n_users)
    start = rng.uniform(_T0, _T1 - 86_400 * 30, n_users)
    span = np.minimum(rng.lognormal(np.log(86_400 * 60), 1.5, n_users), _T1 - start)
    cluster_genres = [
        rng.choice(len(GENRES), size=int(rng.integers(1, 4)), replace=False) for _ in range(k)
    ]
    _write_movies(out, rng, cat, cluster_genres)
    write_opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
    written = 0
    block_target = 2_000_000
    u0 = 0
    with (
        (out / "ratings.csv").open("wb") as raw_file,
        pacsv.CSVWriter(
            raw_file,
            pa.schema(
                [
                    ("userId", pa.int64()),
                    ("movieId", pa.int64()),
                    ("rating", pa.string()),
                    ("timestamp", pa.int64()),
                ]
            ),
            write_options=write_opts,
        ) as writer,
    ):
        raw_file.write(b"userId,movieId,rating,timestamp\n")
        while u0 < n_users:
            cum = np.cumsum(counts[u0:])
            u1 = u0 + max(1, int(np.searchsorted(cum, block_target)))
            u1 = min(u1, n_users)
            taste = rng.dirichlet(taste_alpha, u1 - u0)
            lu, items = _block(rng, cat, counts[u0:u1], taste)
            gu = lu + u0
            affinity = taste[lu, cat.cluster[items]] * k - 1.0
            score = (
                3.5
                + user_bias[gu]
                + cat.bias[items]
                + 0.45 * np.tanh(affinity)
                + rng.normal(0.0, 0.6, gu.shape[0])
            )
            halves = rng.random(gu.shape[0]) < 0.35
            stars = np.where(halves, np.round(score * 2) / 2, np.round(score))
            code = (np.clip(stars, 0.5, 5.0) * 2).astype(np.int8) - 1
            ts = (start[gu] + rng.random(gu.shape[0]) * span[gu]).astype(np.int64)
            rating = pa.DictionaryArray.from_arrays(pa.array(code), _RATING_LABELS)
            writer.write_table(
                pa.table(
                    {
                        "userId": pa.array(gu + 1),
                        "movieId": pa.array(cat.movie_ids[items]),
                        "rating": rating.cast(pa.string()),
                        "timestamp": pa.array(ts),
                    }
                )
            )
            written += gu.shape[0]
            if progress is not None:
                progress(gu.shape[0])
            u0 = u1
    n_tags = int(config.ratings * config.tag_rate)
    _write_tags(out, rng, cat, n_users, n_tags)
    (out / "README.txt").write_text(
        "Synthetic MovieLens-shaped data generated by `movierec data synth` "
        f"(seed {config.seed}, {config.ratings} ratings, {n_users} users, {n_items} movies).\n"
        "It contains no MovieLens data.\n"
    )
    logger.info("wrote %d ratings for %d users and %d movies to %s", written, n_users, n_items, out)
    return {
        "ratings": written,
        "movies": n_items,
        "links": n_items,
        "tags": n_tags,
        "users": n_users,
    }


def _write_movies(
    out: Path, rng: np.random.Generator, cat: _Catalog, cluster_genres: list[np.ndarray]
) -> None:
    n = cat.movie_ids.shape[0]
    years = np.clip(np.round(2018 - rng.exponential(14.0, n)), 1902, 2018).astype(int)
    adj = rng.integers(0, len(ADJECTIVES), size=(n,))
    noun = rng.integers(0, len(NOUNS), size=(n,))
    the = rng.random(size=(n,)) < 0.25
    titles = []
    genres = []
    for j in range(n):
        base = f"{ADJECTIVES[adj[j]]} {NOUNS[noun[j]]}"
        if the[j]:
            base += ", The"
        titles.append(f"{base} ({years[j]})")
        g = cluster_genres[cat.cluster[j]]
        genres.append("|".join(GENRES[x] for x in sorted(g)))
    _write_small(
        out / "movies.csv",
        ("movieId", "title", "genres"),
        zip(cat.movie_ids.tolist(), titles, genres, strict=True),
    )
    imdb_raw = rng.choice(9_999_999, size=(n,), replace=False)
    imdb = [f"{x:07d}" for x in imdb_raw.tolist()]
    tmdb_raw = rng.choice(999_999, size=(n,), replace=False)
    tmdb = (tmdb_raw + 1).tolist()
    _write_small(
        out / "links.csv",
        ("movieId", "imdbId", "tmdbId"),
        zip(cat.movie_ids.tolist(), imdb, tmdb, strict=True),
    )


def _write_tags(
    out: Path, rng: np.random.Generator, cat: _Catalog, n_users: int, n_tags: int
) -> None:
    users = rng.integers(1, n_users + 1, n_tags)
    items = rng.integers(0, cat.movie_ids.shape[0], n_tags)
    tag_idx = (cat.cluster[items] + rng.integers(0, 3, n_tags)) % len(TAGS)
    movies = cat.movie_ids[items]
    stamps = rng.integers(_T0, _T1, n_tags)
    idx = np.lexsort((movies, users))
    rows = ((int(users[j]), int(movies[j]), TAGS[tag_idx[j]], int(stamps[j])) for j in idx)
    _write_small(out / "tags.csv", ("userId", "movieId", "tag", "timestamp"), rows)


def _write_small(path: Path, header: tuple[str, ...], rows: Iterable[tuple[object, ...]]) -> None:
    """Write a small CSV as MovieLens does: header bare, fields quoted only when needed."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
