"""The frozen model input: user×item CSR values, timestamps, vocabularies, side data, sha256."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from movierec.data.catalog import Catalog
from movierec.data.keys import pair_codes, strictly_increasing_pairs
from movierec.data.vocab import Vocabulary
from movierec.errors import InvalidDataError


@dataclass(frozen=True)
class Fingerprint:
    """Identity of a data snapshot: sha256 of its content plus its shape."""

    sha256: str
    rows: int
    users: int
    items: int

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"sha256": self.sha256, "rows": self.rows, "users": self.users, "items": self.items}


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class InteractionData:
    """User×item interactions as models see them: contiguous int32 indices only.

    Attributes:
        matrix: CSR (users × items) of float32 values (ratings, watch depth, ...), sorted
            indices, no duplicates.
        timestamps: int64 event time of each stored entry, aligned with ``matrix.data``.
        users: Vocabulary of raw user ids (row ``u`` is ``users.ids[u]``).
        items: Vocabulary of raw movie ids (column ``i`` is ``items.ids[i]``).
        fingerprint: sha256 over the arrays, with row/user/item counts.
        catalog: Side data aligned with ``items`` (genres, tags, years), when known. It
            travels with the interactions, so every model that needs it finds it here.
    """

    matrix: sp.csr_matrix
    timestamps: np.ndarray
    users: Vocabulary
    items: Vocabulary
    fingerprint: Fingerprint
    catalog: Catalog | None = None

    def with_catalog(
        self, movies: pa.Table | None, tags: pa.Table | None = None
    ) -> InteractionData:
        """The same interactions with side data from movie and tag tables (aligned here)."""
        return self.with_side(Catalog.build(self.items, movies, tags))

    def with_side(self, catalog: Catalog | None) -> InteractionData:
        """The same interactions carrying ``catalog`` (already aligned with :attr:`items`)."""
        if catalog is not None and catalog.genres.shape[0] != self.n_items:
            raise ValueError("the catalog is not aligned with the item vocabulary")
        return dataclasses.replace(self, catalog=catalog)

    @property
    def n_users(self) -> int:
        """Number of users (rows)."""
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        """Number of items (columns)."""
        return int(self.matrix.shape[1])

    @property
    def nnz(self) -> int:
        """Number of stored interactions."""
        return int(self.matrix.nnz)

    @property
    def density(self) -> float:
        """Fraction of the user×item matrix that is filled."""
        cells = self.n_users * self.n_items
        return self.nnz / cells if cells else 0.0

    def timestamp_matrix(self) -> sp.csr_matrix:
        """Return the timestamps as a CSR matrix with the same structure as :attr:`matrix`."""
        m = self.matrix
        return sp.csr_matrix((self.timestamps, m.indices, m.indptr), shape=m.shape)

    @classmethod
    def from_arrays(
        cls,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        values: np.ndarray,
        timestamps: np.ndarray,
        *,
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
    ) -> InteractionData:
        """Build from raw-id arrays (one interaction per (user, item); deduplicate first).

        Args:
            user_ids: Raw user ids.
            item_ids: Raw movie ids.
            values: Interaction values (rating, confidence, ...).
            timestamps: Unix seconds per interaction.
            users: Fixed user vocabulary (rows outside it are dropped); default: from the data.
            items: Fixed item vocabulary (columns outside it are dropped); default: from the data.

        Raises:
            InvalidDataError: A (user, item) pair occurs twice.
        """
        users = users or Vocabulary.from_ids(user_ids)
        items = items or Vocabulary.from_ids(item_ids)
        u = users.index(user_ids)
        i = items.index(item_ids)
        vals = np.asarray(values, dtype=np.float32)
        ts = np.asarray(timestamps, dtype=np.int64)
        known = (u >= 0) & (i >= 0)
        if not bool(known.all()):
            u, i, vals, ts = u[known], i[known], vals[known], ts[known]
        if not strictly_increasing_pairs(u, i):
            key = pair_codes(u, i)
            order = np.argsort(key, kind="stable")
            key, u, i, vals, ts = key[order], u[order], i[order], vals[order], ts[order]
            if bool(np.any(key[1:] == key[:-1])):
                raise InvalidDataError("duplicate (user, movie) pairs: deduplicate before building")
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(np.bincount(u, minlength=len(users)), out=indptr[1:])
        if indptr[-1] < np.iinfo(np.int32).max:
            indptr = indptr.astype(np.int32)
        matrix = sp.csr_matrix(
            (vals, i.astype(np.int32, copy=False), indptr), shape=(len(users), len(items))
        )
        matrix.has_sorted_indices = True
        for a in (matrix.data, matrix.indices, matrix.indptr):
            _readonly(a)
        fp = cls.compute_fingerprint(matrix, ts, users, items)
        return cls(matrix, _readonly(ts), users, items, fp)

    @classmethod
    def from_table(cls, ratings: pa.Table, value_column: str = "rating") -> InteractionData:
        """Build from a canonical ratings table (``user_id, movie_id, <value>, timestamp``)."""
        return cls.from_arrays(
            ratings["user_id"].to_numpy(),
            ratings["movie_id"].to_numpy(),
            ratings[value_column].to_numpy(),
            ratings["timestamp"].to_numpy(),
        )

    @staticmethod
    def compute_fingerprint(
        matrix: sp.csr_matrix, timestamps: np.ndarray, users: Vocabulary, items: Vocabulary
    ) -> Fingerprint:
        """sha256 over indptr, indices, values, timestamps and both vocabularies."""
        h = hashlib.sha256()
        for a in (
            np.asarray(matrix.indptr, dtype=np.int64),
            matrix.indices,
            matrix.data,
            timestamps,
            users.ids,
            items.ids,
        ):
            h.update(np.ascontiguousarray(a).data)
        return Fingerprint(h.hexdigest(), int(matrix.nnz), len(users), len(items))
