"""The one split implementation: evaluation protocols and the ranker's label split use it.

Protocols are deterministic splits of a ratings table, each stated exactly.

Every split trains on a table and evaluates on interactions of the same users (or, for
strong generalisation, of held-out users given a fold-in history). Test interactions whose
movie is unknown to training are skipped and counted; ranking is over all items a user has
not interacted with in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from movierec.data.interactions import InteractionData

Protocol = Literal[
    "leave-last-out", "temporal", "stratified", "kfold-rating", "strong-generalization"
]
PROTOCOLS: tuple[Protocol, ...] = (
    "leave-last-out",
    "temporal",
    "stratified",
    "kfold-rating",
    "strong-generalization",
)
Stage = Literal["test", "valid"]
#: The temporal protocol's cutoff: this quantile of all timestamps.
TEMPORAL_QUANTILE = 0.8
#: Share of a user's interactions held out by the random (stratified) protocol.
RANDOM_FRACTION = 0.25

DESCRIPTIONS: dict[str, str] = {
    "leave-last-out": "per user, the last interaction by time (ties broken by a seeded shuffle) "
    "is the test item and the second-last the validation item; users need >= 3 interactions "
    "to be evaluated; every rating counts as relevant",
    "temporal": "one global cutoff at the 80th percentile of timestamps: later interactions "
    "of users seen before the cutoff are test; validation uses the 80th percentile of the "
    "training period the same way; every test interaction is relevant",
    "stratified": "per user, a seeded random 25% of interactions (at least 1, users with >= 2) "
    "is test; validation takes 25% of the rest the same way; every test interaction is relevant",
    "kfold-rating": "ratings shuffled with the seed into 5 folds; each fold is predicted by a "
    "model trained on the other four; RMSE and MAE over predicted ratings",
    "strong-generalization": "Liang et al. 2018: ratings > 3.5 are positives, users with >= 5 "
    "positives; 7.35% of users (as 10k of ML-20M's 136k) held out for test and as many for "
    "validation with seed 98765; a held-out user's positives are split 80% fold-in / 20% test",
}


@dataclass(frozen=True)
class Split:
    """One train/evaluation split.

    Attributes:
        train: Training interactions.
        truth: CSR (queries × train items) of the held-out interactions (values = ratings).
        users: Train-user index of each query row, or ``None`` when queries are new users.
        history: CSR fold-in histories of new users (values), aligned with ``truth`` rows.
        history_ts: Timestamps of ``history`` (same structure).
        skipped: Held-out interactions not evaluated, by reason.
    """

    train: InteractionData
    truth: sp.csr_matrix
    users: np.ndarray | None
    history: sp.csr_matrix | None = None
    history_ts: sp.csr_matrix | None = None
    skipped: dict[str, int] = field(default_factory=dict)


def _arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        table["user_id"].to_numpy().astype(np.int64),
        table["movie_id"].to_numpy().astype(np.int64),
        table["rating"].to_numpy().astype(np.float32),
        table["timestamp"].to_numpy().astype(np.int64),
    )


def _make_split(
    u: np.ndarray,
    i: np.ndarray,
    r: np.ndarray,
    ts: np.ndarray,
    train_mask: np.ndarray,
    test_mask: np.ndarray,
) -> Split:
    train = InteractionData.from_arrays(u[train_mask], i[train_mask], r[train_mask], ts[train_mask])
    tu = train.users.index(u[test_mask])
    ti = train.items.index(i[test_mask])
    tr = r[test_mask]
    unknown_user = tu < 0
    unknown_item = (ti < 0) & ~unknown_user
    ok = (tu >= 0) & (ti >= 0)
    users = np.unique(tu[ok])
    row_of = np.full(train.n_users, -1, np.int64)
    row_of[users] = np.arange(users.size)
    truth = sp.csr_matrix(
        (tr[ok], (row_of[tu[ok]], ti[ok])), shape=(users.size, train.n_items), dtype=np.float32
    )
    truth.sum_duplicates()
    skipped = {"unknown_user": int(unknown_user.sum()), "unknown_item": int(unknown_item.sum())}
    return Split(train, truth, users, skipped=skipped)


def rank_in_user(
    u: np.ndarray, order_keys: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Position of each row within its user, and the user's size.

    Rows are sorted within a user by ``order_keys`` (the last key is the primary one).
    """
    order = np.lexsort((*order_keys, u))
    su = u[order]
    start = np.searchsorted(su, su, side="left")
    size = np.searchsorted(su, su, side="right") - start
    pos = np.empty_like(order)
    pos[order] = np.arange(order.size) - start
    sizes = np.empty_like(order)
    sizes[order] = size
    return pos, sizes


def leave_last_out(table: pa.Table, seed: int = 0, stage: Stage = "test") -> Split:
    """Last interaction by time = test, second-last = validation (see :data:`DESCRIPTIONS`)."""
    u, i, r, ts = _arrays(table)
    tie = np.random.default_rng(seed).random(u.size)
    pos, size = rank_in_user(u, (tie, ts))
    from_end = size - 1 - pos
    eligible = size >= 3
    test = eligible & (from_end == 0)
    valid = eligible & (from_end == 1)
    if stage == "valid":
        return _make_split(u, i, r, ts, ~(test | valid), valid)
    return _make_split(u, i, r, ts, ~test, test)


def before_cutoff(ts: np.ndarray, quantile: float = TEMPORAL_QUANTILE) -> np.ndarray:
    """Rows at or before the ``quantile`` of ``ts`` (the temporal protocol's training part)."""
    mask: np.ndarray = ts <= np.quantile(ts, quantile)
    return mask


def temporal(
    table: pa.Table, seed: int = 0, stage: Stage = "test", quantile: float = TEMPORAL_QUANTILE
) -> Split:
    """Global time cutoff (see :data:`DESCRIPTIONS`); ``seed`` is unused (deterministic)."""
    u, i, r, ts = _arrays(table)
    before = before_cutoff(ts, quantile)
    if stage == "valid":
        inner = ts <= np.quantile(ts[before], quantile)
        return _make_split(u, i, r, ts, before & inner, before & ~inner)
    return _make_split(u, i, r, ts, before, ~before)


def random_fraction(
    u: np.ndarray, rng: np.random.Generator, fraction: float, among: np.ndarray
) -> np.ndarray:
    """Mark ceil-free ``round(fraction · n_u)`` (at least 1 when n_u >= 2) random rows per user."""
    idx = np.flatnonzero(among)
    uu = u[idx]
    pos, size = rank_in_user(uu, (rng.random(idx.size),))
    take = np.maximum(np.round(size * fraction), (size >= 2).astype(float))
    out = np.zeros(u.size, dtype=bool)
    out[idx[pos < take]] = True
    return out


def stratified(
    table: pa.Table, seed: int = 0, stage: Stage = "test", fraction: float = RANDOM_FRACTION
) -> Split:
    """Per-user random split (see :data:`DESCRIPTIONS`)."""
    u, i, r, ts = _arrays(table)
    rng = np.random.default_rng(seed)
    test = random_fraction(u, rng, fraction, np.ones(u.size, bool))
    if stage == "valid":
        valid = random_fraction(u, rng, fraction, ~test)
        return _make_split(u, i, r, ts, ~test & ~valid, valid)
    return _make_split(u, i, r, ts, ~test, test)


def kfold_rating(table: pa.Table, seed: int = 0, folds: int = 5) -> list[Split]:
    """K random folds of ratings (see :data:`DESCRIPTIONS`)."""
    u, i, r, ts = _arrays(table)
    fold = np.random.default_rng(seed).permutation(u.size) % folds
    return [_make_split(u, i, r, ts, fold != f, fold == f) for f in range(folds)]


def strong_generalization(
    table: pa.Table,
    seed: int = 98765,
    stage: Stage = "test",
    heldout_fraction: float = 0.0735,
) -> Split:
    """Held-out users with 80/20 fold-in (see :data:`DESCRIPTIONS`)."""
    u, i, r, ts = _arrays(table)
    pos_mask = r > 3.5
    u, i, r, ts = u[pos_mask], i[pos_mask], r[pos_mask], ts[pos_mask]
    users, counts = np.unique(u, return_counts=True)
    users = users[counts >= 5]
    keep = np.isin(u, users)
    u, i, r, ts = u[keep], i[keep], r[keep], ts[keep]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(users)
    n_held = max(1, round(users.size * heldout_fraction))
    test_users, valid_users = perm[:n_held], perm[n_held : 2 * n_held]
    held = test_users if stage == "test" else valid_users
    out_users = np.concatenate([test_users, valid_users])
    train_mask = ~np.isin(u, out_users)
    train = InteractionData.from_arrays(u[train_mask], i[train_mask], r[train_mask], ts[train_mask])
    h_mask = np.isin(u, held)
    hu, hi, hr, hts = u[h_mask], train.items.index(i[h_mask]), r[h_mask], ts[h_mask]
    unknown_item = int((hi < 0).sum())
    known = hi >= 0
    hu, hi, hr, hts = hu[known], hi[known], hr[known], hts[known]
    is_test = random_fraction(hu, rng, 0.2, np.ones(hu.size, bool))
    rows_users = np.unique(hu)
    row = np.searchsorted(rows_users, hu)
    shape = (rows_users.size, train.n_items)
    hist = ~is_test

    def csr(mask: np.ndarray, vals: np.ndarray) -> sp.csr_matrix:
        m = sp.csr_matrix((vals[mask], (row[mask], hi[mask])), shape=shape)
        m.sort_indices()
        return m

    return Split(
        train,
        csr(is_test, hr).astype(np.float32),
        None,
        history=csr(hist, hr).astype(np.float32),
        history_ts=csr(hist, hts.astype(np.float64)),
        skipped={"unknown_item": unknown_item},
    )


def make_split(protocol: Protocol, table: pa.Table, seed: int, stage: Stage = "test") -> Split:
    """Dispatch a ranking protocol by name."""
    if protocol == "leave-last-out":
        return leave_last_out(table, seed, stage)
    if protocol == "temporal":
        return temporal(table, seed, stage)
    if protocol == "stratified":
        return stratified(table, seed, stage)
    if protocol == "strong-generalization":
        return strong_generalization(table, 98765 + seed, stage)
    raise ValueError(f"{protocol} is not a ranking protocol")
