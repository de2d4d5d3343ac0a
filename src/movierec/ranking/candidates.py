"""Candidate generation from several sources, merged with per-source scores and ranks."""

from __future__ import annotations

import concurrent.futures
import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

import movierec._kernels as _kernels
from movierec.data.weighting import ranks_shared
from movierec.models.base import Recommender
from movierec.models.topk import top_indices
from movierec.ranking.features import feature_matrix
from movierec.spare import spare
from movierec.types import row_lengths

#: Bytes of dense score rows (all sources, their top-k copy and masks) per chunk of queries.
CANDIDATE_CHUNK_BYTES = 512 * 1024 * 1024
#: Sources scored on a helper thread beside the others when the rows hold many events: their
#: scoring of a long history is mostly BLAS (ALS's fold-in solve), which runs without the
#: interpreter lock.
ASIDE_SOURCES = ("als",)
#: Stored events of a batch's rows from which the aside sources go to the helper thread, in
#: batches of at most ``ASIDE_MAX_ROWS`` rows (a request's; training's large batches run
#: their BLAS multi-threaded already). In-process, the bench's 200 rows with a fresh like:
#: the heaviest (2,699 events) 3.16 -> 2.62 ms, the same scores. Not while the spare core
#: helps (:mod:`movierec.spare`): three runnable threads on two cores stall it.
ASIDE_FROM_NNZ = 1_000
ASIDE_MAX_ROWS = 64
#: Candidate sources, in the order their columns appear.
DEFAULT_SOURCES = ("popularity", "itemknn", "als", "ease", "genre", "sequential")


@dataclass(frozen=True)
class Candidates:
    """A merged candidate pool for a batch of queries.

    Attributes:
        rows: Query row of each (query, item) pair, sorted ascending.
        items: Item index of each pair.
        sources: Source names (columns of the arrays below).
        scores: (pairs × sources) each source's score of the pair's item.
        ranks: (pairs × sources) the item's rank in the source's list (0 = first), or
            ``per_source`` when the source did not propose it.
        proposed: (pairs × sources) whether the source proposed the item.
    """

    rows: np.ndarray
    items: np.ndarray
    sources: tuple[str, ...]
    scores: np.ndarray
    ranks: np.ndarray
    proposed: np.ndarray

    @property
    def size(self) -> int:
        """Number of (query, item) pairs."""
        return int(self.rows.size)

    def bounds(self, n_queries: int) -> np.ndarray:
        """Start offset of each query's pairs (length ``n_queries + 1``)."""
        return np.searchsorted(self.rows, np.arange(n_queries + 1))


def generate(
    sources: dict[str, Recommender],
    values: sp.csr_matrix,
    timestamps: sp.csr_matrix | None,
    per_source: int,
    *,
    exclude: sp.csr_matrix | None = None,
) -> Candidates:
    """Top ``per_source`` unseen items of every source for each query row, merged.

    Args:
        sources: Fitted source models by name (all on the same item vocabulary).
        values: History rows (queries × items).
        timestamps: Times aligned with ``values``.
        per_source: Items each source proposes per query.
        exclude: Items never proposed (default: the history itself).
    """
    names = tuple(sources)
    n_q = values.shape[0]
    exclude = values if exclude is None else exclude
    chunk = max(1, CANDIDATE_CHUNK_BYTES // max(1, 10 * len(names) * values.shape[1]))
    if n_q > chunk:  # dense score rows of every source: bounded by chunks of queries
        parts = [
            generate(
                sources,
                values[a : a + chunk],
                None if timestamps is None else timestamps[a : a + chunk],
                per_source,
                exclude=exclude[a : a + chunk],
            )
            for a in range(0, n_q, chunk)
        ]
        offsets = np.arange(0, n_q, chunk)
        return Candidates(
            np.concatenate([p.rows + o for p, o in zip(parts, offsets, strict=True)]),
            np.concatenate([p.items for p in parts]),
            names,
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.ranks for p in parts]),
            np.concatenate([p.proposed for p in parts]),
        )
    n_src, n_items = len(names), values.shape[1]
    # every source's scores in one array
    stacked = np.empty((n_src, n_q, n_items), np.float32)
    long = values.nnz >= ASIDE_FROM_NNZ and n_q <= ASIDE_MAX_ROWS and not spare()
    aside = [n for n in names if n in ASIDE_SOURCES] if long else []
    done = (  # long histories: ALS's solve on the helper thread while the rest run here
        _helper().submit(_score_into, stacked, names, sources, aside, values, timestamps)
        if aside
        else None
    )
    with ranks_shared():  # the rows' recency ranks once for every source that weighs by them
        here = [n for n in names if n not in aside]
        _score_into(stacked, names, sources, here, values, timestamps)
    if done is not None:
        done.result()
    kk = min(per_source, n_items)
    # each query's excluded items masked in every source at once (in place: an excluded
    # item is never a pair, so no pair's score is masked), then one top-k over every
    # (source, query) row; a proposal without a finite score is none (-1), as in ``topk``
    if exclude.nnz:
        stacked[
            :, np.repeat(np.arange(n_q), row_lengths(exclude.indptr)), exclude.indices
        ] = -np.inf
    flat = stacked.reshape(n_src * n_q, n_items)
    prop = top_indices(flat, kk)
    offsets = np.arange(0, flat.size, n_items, dtype=np.int64)[:, None]
    prop[~np.isfinite(flat.ravel()[prop + offsets])] = -1
    return pool_pairs(stacked, prop.reshape(n_src, n_q, kk), per_source, names)


def _score_into(
    stacked: np.ndarray,
    names: tuple[str, ...],
    sources: dict[str, Recommender],
    which: list[str],
    values: sp.csr_matrix,
    timestamps: sp.csr_matrix | None,
) -> None:
    for j, name in enumerate(names):
        if name in which:
            stacked[j] = sources[name].score_rows(values, timestamps)


@functools.cache
def _helper() -> concurrent.futures.ThreadPoolExecutor:
    """The one helper thread of the aside sources (started on first use)."""
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="movierec-aside")


def pool_pairs(
    stacked: np.ndarray, prop: np.ndarray, per_source: int, names: tuple[str, ...]
) -> Candidates:
    """The merged pool of the sources' proposals, with their scores and ranks.

    Args:
        stacked: (sources × queries × items) float32 scores.
        prop: (sources × queries × k) proposed items of each source, best first (-1: none).
        per_source: Rank given where a source did not propose the item.
        names: Source names.

    Each query's pairs are its distinct proposed items, ascending; a pair's score from a
    source is 0 where not finite. Compiled (``_kernels.merge_proposals``: one pass a query).
    """
    n_src, n_q, n_items = stacked.shape
    kk = prop.shape[2]
    cap = n_q * min(n_src * kk, n_items)
    rows, items = np.empty(cap, np.int64), np.empty(cap, np.int64)
    scores = np.empty((cap, n_src), np.float32)
    ranks = np.empty((cap, n_src), np.float32)
    proposed = np.empty((cap, n_src), np.bool_)
    n_pairs = _kernels.merge_proposals(
        np.ascontiguousarray(prop, np.int64),
        np.ascontiguousarray(stacked, np.float32),
        n_src,
        n_q,
        kk,
        n_items,
        float(per_source),
        rows,
        items,
        scores,
        ranks,
        proposed,
    )
    n = int(n_pairs)
    return Candidates(rows[:n], items[:n], names, scores[:n], ranks[:n], proposed[:n])


def candidate_recall(cands: Candidates, truth: sp.csr_matrix) -> dict[str, float]:
    """Recall of each source's proposals and of the merged pool against held-out items.

    Recall is the mean over queries with at least one held-out item of
    ``|proposed ∩ held-out| / |held-out|``.
    """
    truth = sp.csr_matrix(truth)
    n_q = truth.shape[0]
    n_rel = np.diff(truth.indptr).astype(np.float64)
    hit = np.asarray(truth[cands.rows, cands.items]).ravel() != 0
    evaluated = n_rel > 0
    out: dict[str, float] = {}

    def recall(mask: np.ndarray) -> float:
        per = np.bincount(cands.rows[mask & hit], minlength=n_q) / np.maximum(n_rel, 1)
        return float(per[evaluated].mean()) if evaluated.any() else 0.0

    for j, name in enumerate(cands.sources):
        out[f"candidate_recall/{name}"] = recall(cands.proposed[:, j])
    out["candidate_recall/pool"] = recall(np.ones(cands.size, bool))
    out["candidate_pool_size"] = float(cands.size / max(n_q, 1))
    return out


def source_feature_names(sources: tuple[str, ...]) -> list[str]:
    """Names of the candidate-source features (:func:`source_features` writes them)."""
    names = []
    for s in sources:
        names += [f"{s}_score", f"{s}_rank", f"{s}_z"]
    return [*names, "n_sources"]


def source_features(
    cands: Candidates, n_queries: int, where: np.ndarray, out: np.ndarray, dest: np.ndarray
) -> None:
    """Write the candidate-source features of pairs into columns ``dest`` of ``out``.

    Each source's score, rank and score standardised within its query, then the number of
    sources that proposed the pair. Pair ``p`` goes to row ``where[p]`` of ``out`` (-1: not
    written); the standardisation is over all the query's pairs (mean and population
    standard deviation, at least 1e-6). Compiled (``_kernels.source_features``);
    ``dest[f] = -1`` skips feature ``f``.
    """
    _kernels.source_features(
        cands.bounds(n_queries).astype(np.int64),
        np.ascontiguousarray(cands.scores, np.float32),
        np.ascontiguousarray(cands.ranks, np.float32),
        np.ascontiguousarray(cands.proposed, np.bool_),
        len(cands.sources),
        np.ascontiguousarray(where, np.int64),
        feature_matrix(out),
        out.shape[1],
        np.ascontiguousarray(dest, np.int64),
    )
