"""Approximate top-k (faiss) against exact search for factor-model retrieval (JSON output).

    python benchmarks/bench_ann.py [--items 60000 1000000] [--dim 64] [--out ...]

For each catalog size: synthetic item and user vectors (64 dimensions, 200 clusters plus
unit noise as wide as the spread of the centres), the exact top-10 of 1,000 users (NumPy
product + top-k, the baseline, in the same run), and each index kind (``hnsw`` and ``ivf`` of
``movierec.models.ann``): build time, recall@10 against exact, single-query latency p50/p99
(200 queries one at a time) and the time of the 1,000-query batch. HNSW at 1M items is built
only with ``--hnsw-large`` (it takes minutes on two cores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from movierec.models.ann import AnnIndex
from movierec.models.topk import topk

ROOT = Path(__file__).resolve().parents[1]


def vectors(n: int, d: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    pick = centers[rng.integers(0, len(centers), n)]
    return (pick + rng.normal(size=(n, d))).astype(np.float32)


def exact_top(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    out = []
    for start in range(0, len(queries), 100):
        out.append(topk(queries[start : start + 100] @ items.T, k).items)
    return np.vstack(out)


def single_latency(fn: Any, queries: np.ndarray) -> dict[str, float]:
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q[None, :])
        lat.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, nargs="+", default=[60_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--hnsw-large", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ann.json")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(200, a.dim))
    results = []
    for n in a.items:
        items = vectors(n, a.dim, rng, centers)
        queries = vectors(1000, a.dim, rng, centers)
        t0 = time.perf_counter()
        truth = exact_top(items, queries, 10)
        exact_batch = time.perf_counter() - t0
        row: dict[str, Any] = {
            "items": n,
            "exact": {
                "batch_1000_s": exact_batch,
                **single_latency(lambda q, it=items: topk(q @ it.T, 10), queries[:200]),
            },
        }
        for kind in ("hnsw", "ivf"):
            if kind == "hnsw" and n > 200_000 and not a.hnsw_large:
                continue
            index = AnnIndex(items, kind)
            t0 = time.perf_counter()
            got = index.top_k(queries, 10).items
            batch = time.perf_counter() - t0
            recall = float(
                np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth, strict=True)])
            )
            row[kind] = {
                "build_s": index.build_s,
                "recall_at_10": recall,
                "batch_1000_s": batch,
                **single_latency(lambda q, ix=index: ix.top_k(q, 10), queries[:200]),
            }
            print(
                f"{n:,} items {kind}: recall@10 {recall:.3f}, single p50 "
                f"{row[kind]['p50_ms']:.2f} ms vs exact {row['exact']['p50_ms']:.2f} ms, "
                f"build {index.build_s:.1f} s",
                flush=True,
            )
        results.append(row)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"dim": a.dim, "queries": 1000, "results": results}, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
