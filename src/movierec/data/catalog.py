"""Item side information aligned with an item vocabulary: genre and tag matrices, titles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from movierec.data.vocab import Vocabulary


@dataclass(frozen=True)
class Catalog:
    """Genres (items × genres, binary) and tags (items × tags, counts) for a vocabulary."""

    genres: sp.csr_matrix
    genre_names: tuple[str, ...]
    tags: sp.csr_matrix
    tag_names: tuple[str, ...]

    @classmethod
    def build(cls, items: Vocabulary, movies: pa.Table | None, tags: pa.Table | None) -> Catalog:
        """Align genres and tags (lower-cased) with ``items``; unknown movies are skipped."""
        n = len(items)
        genre_names: list[str] = []
        g_rows: list[int] = []
        g_cols: list[int] = []
        if movies is not None and movies.num_rows:
            idx = items.index(movies["movie_id"].to_numpy())
            lookup: dict[str, int] = {}
            for row, genres in zip(idx.tolist(), movies["genres"].to_pylist(), strict=True):
                if row < 0:
                    continue
                for g in genres or []:
                    col = lookup.setdefault(g, len(lookup))
                    g_rows.append(row)
                    g_cols.append(col)
            genre_names = list(lookup)
        genres = sp.csr_matrix(
            (np.ones(len(g_rows), np.float32), (g_rows, g_cols)), shape=(n, len(genre_names))
        )
        genres.data[:] = 1.0
        tag_names: list[str] = []
        t_rows: list[int] = []
        t_cols: list[int] = []
        if tags is not None and tags.num_rows:
            idx = items.index(tags["movie_id"].to_numpy())
            tlookup: dict[str, int] = {}
            for row, tag in zip(idx.tolist(), tags["tag"].to_pylist(), strict=True):
                if row < 0 or not tag:
                    continue
                t_rows.append(row)
                t_cols.append(tlookup.setdefault(tag.strip().lower(), len(tlookup)))
            tag_names = list(tlookup)
        tag_m = sp.csr_matrix(
            (np.ones(len(t_rows), np.float32), (t_rows, t_cols)), shape=(n, len(tag_names))
        )
        return cls(sp.csr_matrix(genres), tuple(genre_names), tag_m, tuple(tag_names))
