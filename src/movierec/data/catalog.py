"""Item side information aligned with an item vocabulary: genre and tag matrices, titles."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from movierec.data.vocab import Vocabulary


@dataclass(frozen=True)
class Catalog:
    """Genres (items × genres, binary), tags (items × tags, counts) and release years."""

    genres: sp.csr_matrix
    genre_names: tuple[str, ...]
    tags: sp.csr_matrix
    tag_names: tuple[str, ...]
    years: np.ndarray  # float64 per item, NaN when unknown

    @classmethod
    def build(cls, items: Vocabulary, movies: pa.Table | None, tags: pa.Table | None) -> Catalog:
        """Align genres and tags (lower-cased) with ``items``; unknown movies are skipped."""
        genres, genre_names = _multi_hot(
            items, movies, "genres", lambda v: [g for g in (v or []) if g]
        )
        tag_m, tag_names = _multi_hot(
            items, tags, "tag", lambda v: [v.strip().lower()] if v else []
        )
        genres.data[:] = 1.0  # a genre listed twice is still one genre; tags keep counts
        years = np.full(len(items), np.nan)
        if movies is not None and movies.num_rows and "year" in movies.column_names:
            idx = items.index(movies["movie_id"].to_numpy())
            y = np.asarray(movies["year"].to_numpy(zero_copy_only=False), dtype=np.float64)
            ok = idx >= 0
            years[idx[ok]] = y[ok]
        return cls(genres, genre_names, tag_m, tag_names, years)


def _multi_hot(
    items: Vocabulary, table: pa.Table | None, column: str, labels: Callable[[Any], list[str]]
) -> tuple[sp.csr_matrix, tuple[str, ...]]:
    """Items × label-count matrix from a table of ``movie_id`` and ``column`` values."""
    rows: list[int] = []
    cols: list[int] = []
    lookup: dict[str, int] = {}
    if table is not None and table.num_rows:
        idx = items.index(table["movie_id"].to_numpy())
        for row, value in zip(idx.tolist(), table[column].to_pylist(), strict=True):
            if row < 0:
                continue
            for label in labels(value):
                rows.append(row)
                cols.append(lookup.setdefault(label, len(lookup)))
    m = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(items), len(lookup))
    )
    return m, tuple(lookup)
