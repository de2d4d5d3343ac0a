"""Point-in-time feature store for the ranker: user, item and cross features.

The store keeps the item event log sorted by (item, time) with per-item running sums,
computed with Polars and saved as Parquet; it is served from memory as numpy arrays. Item
features of a query are looked up *as of* a time ``t`` (binary search in the sorted log), so
a training example never sees an event after its own time. User features come from the
query's history row (values and timestamps), as of the same time. Cross features combine
both with the candidate sources' scores and ranks.

Every feature belongs to one group (:data:`FEATURE_GROUPS`) so ablations can drop a group.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

import movierec._kernels as _kernels
from movierec import types as mt
from movierec.data.interactions import InteractionData
from movierec.spare import spare
from movierec.types import as_csr, csr, csr_product_dense, row_lengths, time_ranks

DAY = 86_400.0
#: Half-life (days) of decayed popularity and decayed user activity.
DECAY_DAYS = 180.0
#: Trailing windows (days) of item popularity.
WINDOWS = (7, 30, 365)
#: How many of the user's latest items feed the "similar to your last items" features.
LAST_N = 5

USER_FEATURES = (
    "user_n",
    "user_rating_mean",
    "user_rating_std",
    "user_value_sum",
    "user_decayed_n",
    "user_span_days",
    "user_session_n",
    "user_mean_log_pop",
    "user_mean_year",
)
ITEM_FEATURES = (
    "item_n",
    "item_log_n",
    *(f"item_n_{w}d" for w in WINDOWS),
    "item_decayed_n",
    "item_rating_mean",
    "item_days_since_last",
    "item_days_since_first",
    "item_year",
    "item_age_years",
    "item_n_genres",
)
CROSS_FEATURES = (
    "genre_affinity",
    "genre_affinity_max",
    "sim_last_max",
    "sim_last_mean",
    "sim_last_1",
    "log_pop_gap",
    "year_gap",
)
#: :data:`CROSS_FEATURES` in the columns' order of the models trained so far (as the features
#: were once added to a dict), with and without a similarity matrix.
CROSS_COLUMNS = {
    True: ("genre_affinity", "genre_affinity_max", "sim_last_1", "sim_last_max", "sim_last_mean"),
    False: ("genre_affinity", "genre_affinity_max", "sim_last_mean", "sim_last_1", "sim_last_max"),
}
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "user": USER_FEATURES,
    "item": ITEM_FEATURES,
    "cross": CROSS_FEATURES,
}


@dataclass(frozen=True)
class QueryContext:
    """What the features of a batch of queries need from their histories.

    Attributes:
        values: CSR (queries × items) history values.
        timestamps: CSR of event times aligned with ``values``.
        as_of: Time of each query (its latest event): features use nothing later.
    """

    values: sp.csr_matrix
    timestamps: sp.csr_matrix
    as_of: np.ndarray

    @classmethod
    def build(cls, values: sp.csr_matrix, timestamps: sp.csr_matrix | None) -> QueryContext:
        """Context of history rows; rows without timestamps are taken as of time 0."""
        values = as_csr(values, np.float32)
        values.sort_indices()
        if timestamps is None:
            ts = csr(np.zeros(values.nnz), values.indices, values.indptr, values.shape)
        else:
            ts = as_csr(timestamps, np.float64)
            ts.sort_indices()
            if ts.nnz != values.nnz:
                raise ValueError("timestamps must have the structure of values")
        as_of = np.zeros(values.shape[0])
        counts = row_lengths(ts.indptr)
        has = counts > 0
        if has.any():
            as_of[has] = np.maximum.reduceat(ts.data, ts.indptr[:-1][has])
        return cls(values, ts, as_of)

    @functools.cached_property
    def recency(self) -> np.ndarray:
        """Each event's :func:`recency_rank` in its row: the taste and cross features share it."""
        return recency_rank(self.timestamps)


class FeatureStore:
    """Item event log with running sums, plus static item side information."""

    def __init__(
        self,
        item_start: np.ndarray,
        times: np.ndarray,
        cum_rating: np.ndarray,
        cum_decay: np.ndarray,
        item_genres: sp.csr_matrix,
        item_years: np.ndarray,
        t_ref: float,
        genre_names: tuple[str, ...] = (),
    ) -> None:
        self.item_start = np.ascontiguousarray(item_start, np.int64)
        self.times = np.ascontiguousarray(times, np.int64)
        self.cum_rating = cum_rating
        self.cum_decay = cum_decay
        self.item_genres = sp.csr_matrix(item_genres, dtype=np.float32)
        self._genres_f64: tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray] | None = None
        self.item_years = item_years
        self.t_ref = t_ref
        self.genre_names = genre_names
        self.n_items = item_start.size - 1
        self.total_log_pop = np.log1p(np.diff(item_start).astype(np.float64))

    @property
    def item_genres_f64(self) -> sp.csr_matrix:
        """:attr:`item_genres` in float64, made once (SciPy would upcast it per product)."""
        return self._side()[0]

    def _side(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """:attr:`item_genres` in float64 and each item's genre count, made once per matrix."""
        cached = self._genres_f64
        if cached is None or cached[0] is not self.item_genres:
            g = self.item_genres
            counts = np.diff(g.indptr).astype(np.float64)
            cached = (g, sp.csr_matrix(g, dtype=np.float64), counts)
            self._genres_f64 = cached
        return cached[1], cached[2]

    # ---------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        data: InteractionData,
        item_genres: sp.csr_matrix | None = None,
        item_years: np.ndarray | None = None,
        genre_names: tuple[str, ...] = (),
    ) -> FeatureStore:
        """Sort the event log by (item, time) and compute per-item running sums with Polars."""
        coo = data.matrix.tocoo()
        n_items = data.n_items
        t_ref = float(data.timestamps.max()) if data.nnz else 0.0
        frame = (
            pl.DataFrame(
                {
                    "item": coo.col.astype(np.int64),
                    "ts": data.timestamps.astype(np.int64),
                    "rating": coo.data.astype(np.float64),
                }
            )
            .sort(["item", "ts"])
            .with_columns(
                pl.col("rating").cum_sum().over("item").alias("cum_rating"),
                ((pl.col("ts").cast(pl.Float64) - t_ref) / (DECAY_DAYS * DAY / np.log(2)))
                .exp()
                .cum_sum()
                .over("item")
                .alias("cum_decay"),
            )
        )
        genres = (
            item_genres
            if item_genres is not None
            else sp.csr_matrix((n_items, 0), dtype=np.float32)
        )
        years = item_years if item_years is not None else np.full(n_items, np.nan)
        return cls._from_frame(frame, genres, np.asarray(years, np.float64), t_ref, genre_names)

    @classmethod
    def _from_frame(
        cls,
        frame: pl.DataFrame,
        genres: sp.csr_matrix,
        years: np.ndarray,
        t_ref: float,
        genre_names: tuple[str, ...],
    ) -> FeatureStore:
        """Serve a sorted (item, ts, cum_rating, cum_decay) log from memory."""
        items = frame["item"].to_numpy()
        times = frame["ts"].to_numpy().astype(np.int64)
        item_start = np.searchsorted(items, np.arange(genres.shape[0] + 1)).astype(np.int64)
        return cls(
            item_start,
            times,
            frame["cum_rating"].to_numpy(),
            frame["cum_decay"].to_numpy(),
            genres,
            years,
            t_ref,
            genre_names,
        )

    # ----------------------------------------------------------- persistence
    def save(self, folder: Path) -> None:
        """Write the log as Parquet and side information as npz."""
        folder.mkdir(parents=True, exist_ok=True)
        items = np.repeat(np.arange(self.n_items), np.diff(self.item_start))
        pl.DataFrame(
            {
                "item": items,
                "ts": self.times,
                "cum_rating": self.cum_rating,
                "cum_decay": self.cum_decay,
            }
        ).write_parquet(folder / "item_log.parquet")
        g = self.item_genres
        with (folder / "items.npz").open("wb") as f:
            np.savez(
                f,
                allow_pickle=False,
                **mt.csr_to_arrays(g, "genres"),
                genres_shape=np.array(g.shape),
                years=self.item_years,
                t_ref=np.array([self.t_ref]),
                genre_names=np.array(self.genre_names, dtype=str),
            )

    @classmethod
    def load(cls, folder: Path) -> FeatureStore:
        """Read a store written by :meth:`save` (no pickle)."""
        frame = pl.read_parquet(folder / "item_log.parquet")
        with np.load(folder / "items.npz", allow_pickle=False) as z:
            shape = tuple(int(x) for x in z["genres_shape"])
            genres = mt.csr_from_arrays(z, "genres", shape)
            years, t_ref = z["years"], float(z["t_ref"][0])
            names = tuple(str(x) for x in z["genre_names"])
        return cls._from_frame(frame, genres, years, t_ref, names)

    # ---------------------------------------------------------------- lookups
    def _count_le(self, items: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Position after the last event of each item with time <= t (global log position).

        A compiled binary search in the item's own segment of the log (times clipped to
        [0, 2^34)): what a search of packed (item, time) keys over the whole log gives.
        """
        items = np.ascontiguousarray(items, np.int64)
        when = np.ascontiguousarray(np.broadcast_to(np.floor(t), items.shape), np.int64)
        out = np.empty(items.size, np.int64)
        _kernels.count_le(self.item_start, self.times, items, when, out)
        return out

    def _window(
        self, items: np.ndarray, start: np.ndarray, end: np.ndarray, as_of: np.ndarray, days: int
    ) -> np.ndarray:
        before = self._count_le(items, as_of - days * DAY)
        return (end - np.maximum(before, start)).astype(np.float64)

    def item_window_count(self, items: np.ndarray, as_of: np.ndarray, days: int) -> np.ndarray:
        """Events of each item in the ``days`` before its time (``item_n_<days>d``)."""
        items = items.astype(np.int64)
        end = self._count_le(items, as_of)
        return self._window(items, self.item_start[items], end, as_of, days)

    def item_features(self, items: np.ndarray, as_of: np.ndarray) -> dict[str, np.ndarray]:
        """Item features of each (item, time) pair, from events at or before that time."""
        out = np.empty((items.size, len(ITEM_FEATURES)), np.float32)
        self.item_features_into(items, as_of, out, np.arange(len(ITEM_FEATURES)))
        return {name: out[:, j] for j, name in enumerate(ITEM_FEATURES)}

    def item_features_into(
        self, items: np.ndarray, as_of: np.ndarray, out: np.ndarray, dest: np.ndarray
    ) -> bool:
        """Write :data:`ITEM_FEATURES` of (item, time) pairs into columns ``dest`` of ``out``.

        Compiled (``_kernels.item_features``): per pair, the binary searches of its time and
        windows in the item's segment of the log and the features from the running sums, in
        double precision, written once as float32 (``dest[f] = -1`` skips feature ``f``).
        Inside :func:`movierec.spare.spare_core` the pairs are shared with the spare core
        (then True).
        """
        return _kernels.item_features(
            self.item_start,
            self.times,
            np.ascontiguousarray(self.cum_rating, np.float64),
            np.ascontiguousarray(self.cum_decay, np.float64),
            np.ascontiguousarray(self.item_years, np.float64),
            self._side()[1],
            float(self.t_ref),
            np.array(WINDOWS, np.float64),
            np.ascontiguousarray(items, np.int64),
            np.ascontiguousarray(np.broadcast_to(as_of, items.shape), np.float64),
            feature_matrix(out),
            out.shape[1],
            np.ascontiguousarray(dest, np.int64),
            spare(),  # pairs shared with the spare core when a lone request has it
        )

    def user_features(self, ctx: QueryContext) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per-query user features and the (queries × genres) recency-weighted genre taste."""
        v, ts = ctx.values, ctx.timestamps
        n_q = v.shape[0]
        counts = row_lengths(v.indptr).astype(np.float64)
        rows = np.repeat(np.arange(n_q), row_lengths(v.indptr))
        safe = np.maximum(counts, 1)
        vsum = np.bincount(rows, v.data, minlength=n_q)
        mean = vsum / safe
        sq = np.bincount(rows, v.data.astype(np.float64) ** 2, minlength=n_q) / safe
        age_days = (ctx.as_of[rows] - ts.data) / DAY
        decayed = np.bincount(rows, 0.5 ** (age_days / DECAY_DAYS), minlength=n_q)
        first = np.full(n_q, np.nan)
        has = counts > 0
        if has.any():
            first[has] = np.minimum.reduceat(ts.data, v.indptr[:-1][has])
        session = np.bincount(rows, (age_days <= 1.0).astype(np.float64), minlength=n_q)
        logpop = self.total_log_pop[v.indices]
        years = self.item_years[v.indices]
        year_ok = np.isfinite(years)
        year_sum = np.bincount(rows[year_ok], years[year_ok], minlength=n_q)
        year_n = np.bincount(rows[year_ok], minlength=n_q)
        with np.errstate(invalid="ignore", divide="ignore"):
            feats = {
                "user_n": counts,
                "user_rating_mean": np.where(has, mean, np.nan),
                "user_rating_std": np.where(has, np.sqrt(np.maximum(sq - mean**2, 0)), np.nan),
                "user_value_sum": vsum,
                "user_decayed_n": decayed,
                "user_span_days": (ctx.as_of - first) / DAY,
                "user_session_n": session,
                "user_mean_log_pop": np.where(
                    has, np.bincount(rows, logpop, minlength=n_q) / safe, np.nan
                ),
                "user_mean_year": np.where(year_n > 0, year_sum / np.maximum(year_n, 1), np.nan),
            }
        return feats, self.genre_taste(ctx)

    def genre_taste(self, ctx: QueryContext) -> np.ndarray:
        """(queries × genres) history weighted by recency rank (half-life 10 items), normalised."""
        v = ctx.values
        w = np.power(0.5, ctx.recency / 10.0)
        weighted = csr(w, v.indices, v.indptr, v.shape)
        taste = csr_product_dense(weighted, self.item_genres_f64, np.float64)
        norm = taste.sum(axis=1, keepdims=True)
        return np.divide(taste, norm, out=np.zeros_like(taste), where=norm > 0)


def recency_rank(ts: sp.csr_matrix) -> np.ndarray:
    """Per stored entry, its rank in its row by time, 0 = latest (ties by column order)."""
    return time_ranks(ts, dense=False)


def feature_matrix(out: np.ndarray) -> np.ndarray:
    """``out`` checked to be the kernels' feature matrix: 2-D, float32, C-contiguous."""
    if out.ndim != 2 or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("features are written into a C-contiguous 2-D float32 matrix")
    return out
