"""Approximate top-k over item vectors (faiss, inner product) for factor models.

Two index kinds: ``hnsw`` (a graph, no training; best recall per query time, slower to build)
and ``ivf`` (inverted lists over k-means cells, trained on a sample; quick to build at a
million items). Both return exact inner products for the items they find, so an answer's
scores are the model's own; what can differ from exact search is *which* items are found
(recall@10 against exact search is measured by ``benchmarks/bench_ann.py``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from movierec.types import RecBatch

logger = logging.getLogger(__name__)

AnnKind = Literal["hnsw", "ivf"]


class AnnIndex:
    """An inner-product index over item vectors (row ``i`` = item index ``i``)."""

    def __init__(
        self,
        vectors: np.ndarray,
        kind: AnnKind = "hnsw",
        *,
        m: int = 32,
        ef_search: int = 512,
        nprobe: int = 32,
        threads: int = 0,
        seed: int = 0,
    ) -> None:
        import faiss

        if threads:
            faiss.omp_set_num_threads(threads)
        t0 = time.perf_counter()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = x.shape
        self.kind = kind
        self.n_items = n
        index: Any
        self.vectors = x
        self.augmented = kind == "hnsw"
        if kind == "hnsw":
            # inner product is not a metric and graph search suffers from it: search the
            # equivalent L2 problem (items get one more coordinate sqrt(max|x|² - |x|²),
            # queries a 0), then score the found items by their exact inner product
            norms = (x * x).sum(axis=1)
            extra = np.sqrt(np.maximum(norms.max() - norms, 0.0)).astype(np.float32)
            index = faiss.IndexHNSWFlat(d + 1, m)
            index.hnsw.efConstruction = max(2 * m, 64)
            index.add(np.hstack([x, extra[:, None]]))
            index.hnsw.efSearch = ef_search
        elif kind == "ivf":
            nlist = max(1, min(int(np.sqrt(n)), n // 39))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            sample = x[rng.choice(n, min(n, 256 * nlist), replace=False)]
            index.train(sample)
            index.add(x)
            index.nprobe = min(nprobe, nlist)
        else:
            raise ValueError(f"unknown index kind {kind!r}; use hnsw or ivf")
        self.index = index
        self.build_s = time.perf_counter() - t0
        logger.info("%s index over %d items x %d built in %.1f s", kind, n, d, self.build_s)

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best items per query (``-1`` where fewer were found) and their scores."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        n = min(n, self.n_items)
        if not self.augmented:
            scores, items = self.index.search(q, n)
            return items, scores
        _, items = self.index.search(np.hstack([q, np.zeros((len(q), 1), np.float32)]), n)
        scores = np.einsum("qd,qnd->qn", q, self.vectors[np.maximum(items, 0)])
        scores = np.where(items >= 0, scores, -np.inf).astype(np.float32)
        order = np.argsort(-scores, axis=1, kind="stable")
        return np.take_along_axis(items, order, 1), np.take_along_axis(scores, order, 1)

    def top_k(
        self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None = None, slack: int = 20
    ) -> RecBatch:
        """Top-k per query, leaving out each row's ``exclude`` items (seen ones)."""
        seen = np.diff(exclude.indptr) if exclude is not None else np.zeros(len(queries), int)
        n = k + int(seen.max(initial=0)) + slack
        items, scores = self.search(queries, n)
        out_i = np.full((len(queries), k), -1, np.int32)
        out_s = np.full((len(queries), k), -np.inf, np.float32)
        for r in range(len(queries)):
            row_items, row_scores = items[r], scores[r]
            ok = row_items >= 0
            if exclude is not None and seen[r]:
                banned = exclude.indices[exclude.indptr[r] : exclude.indptr[r + 1]]
                ok &= ~np.isin(row_items, banned)
            keep_i, keep_s = row_items[ok][:k], row_scores[ok][:k]
            out_i[r, : keep_i.size] = keep_i
            out_s[r, : keep_s.size] = keep_s
        return RecBatch(out_i, out_s)
