"""Where a lone ``ranked`` row's time goes: each stage alone (hot) and in sequence, in-process.

The rows are the service benchmark's users with a fresh like (the last 200 users of the
bundle, one like each), scored one at a time with one BLAS thread, as the service's scoring
thread scores a lone request: the candidate sources, their top-``per_source``, the merged
pool, the features, the compiled trees, then the answer's top-k. Prints

- each row's time over alternating passes (p50, p90 and the heaviest row, min over passes),
- for the median row: each stage timed alone in a loop of its own (its data stays in cache)
  and inside the whole sequence (what a request gets), and their ratio,

and writes JSON. The home is one that ``bench_service.py --catalog small --strategy ranked``
prepared::

    python benchmarks/bench_row_stages.py --home .movierec/bench/service-small
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from bench_foldin_threads import fresh_likes, home_parser
from movierec.data.user_feedback import UserFeedback
from movierec.data.weighting import ranks_shared
from movierec.models.topk import top_indices, topk
from movierec.ranking import candidates
from movierec.ranking.ranker import RankedRecommender
from movierec.service.engine import Engine

Row = tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]


def _rows(engine: Engine, feedback: dict[int, UserFeedback]) -> list[Row]:
    """(values, times, exclusions) of each user with their feedback."""
    out = []
    for u, fb in feedback.items():
        idx = engine.user_index(u)
        values, ts = engine.overlay.row(idx, fb)
        out.append((values, ts, engine.overlay.exclusions(idx, fb, True)))
    return out


def _best(fn: Callable[[], Any], n: int) -> float:
    """Fastest of ``n`` calls, in ms (the stage's data stays in cache between calls)."""
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def _staged(model: RankedRecommender, row: Row, times: dict[str, list[float]]) -> None:
    """One row through the ranker's stages in order, each stage's time added to ``times``."""
    values, ts, exclude = row
    names = tuple(model.sources)
    n_items = values.shape[1]

    def lap(name: str, t0: float) -> float:
        now = time.perf_counter()
        times.setdefault(name, []).append((now - t0) * 1000)
        return now

    t = t_all = time.perf_counter()
    stacked = np.empty((len(names), 1, n_items), np.float32)
    with ranks_shared():  # as ``generate``: the rows' recency ranks once for the sources
        for j, name in enumerate(names):
            stacked[j] = model.sources[name].score_rows(values, ts)
            t = lap(f"source {name}", t)
    stacked[:, np.zeros(values.nnz, np.int64), values.indices] = -np.inf
    flat = stacked.reshape(len(names), n_items)
    prop = top_indices(flat, model.config.per_source)
    offsets = np.arange(0, flat.size, n_items, dtype=np.int64)[:, None]
    prop[~np.isfinite(flat.ravel()[prop + offsets])] = -1
    t = lap("top per source", t)
    cands = candidates.pool_pairs(
        stacked, prop.reshape(len(names), 1, -1), model.config.per_source, names
    )
    t = lap("pool", t)
    assert model.store is not None
    ctx = model._context(values, ts, model.store)
    feats, _ = model._features(model.store, model.similarity, ctx, cands)
    t = lap("features", t)
    model.learned.predict(feats)
    lap("trees", t)
    t = lap("stages in sequence", t_all)
    topk(np.array(model.score_rows(values, ts), np.float32), 10, exclude=exclude)
    lap("the whole row as served, with its top-k", t)


def main() -> None:
    """Measure and write the JSON."""
    p = home_parser(__doc__, "row-stages.json")
    p.add_argument("--passes", type=int, default=6)
    a = p.parse_args()
    engine, model, feedback = fresh_likes(a.home)
    rows = _rows(engine, feedback)
    with threadpool_limits(1, "blas"):
        per_pass = []
        for _ in range(a.passes):
            per = []
            for values, ts, exclude in rows:
                t0 = time.perf_counter()
                topk(np.array(model.score_rows(values, ts), np.float32), 10, exclude=exclude)
                per.append((time.perf_counter() - t0) * 1000)
            per_pass.append(per)
        best = np.min(np.array(per_pass[1:]), axis=0)  # each row's fastest pass
        median_row = rows[int(np.argsort([r[0].nnz for r in rows])[len(rows) // 2])]
        times: dict[str, list[float]] = {}
        for _ in range(300):
            _staged(model, median_row, times)
        values, ts, _ = median_row
        assert model.store is not None
        store = model.store
        ctx = model._context(values, ts, store)
        cands = candidates.generate(model.sources, values, ts, model.config.per_source)
        feats, _ = model._features(store, model.similarity, ctx, cands)
        flat = np.stack([s.score_rows(values, ts)[0] for s in model.sources.values()])
        alone = {
            f"source {n}": _best(functools.partial(s.score_rows, values, ts), 300)
            for n, s in model.sources.items()
        }
        alone["top per source"] = _best(lambda: top_indices(flat, model.config.per_source), 300)
        alone["features"] = _best(
            lambda: model._features(
                store, model.similarity, model._context(values, ts, store), cands
            ),
            300,
        )
        alone["trees"] = _best(lambda: model.learned.predict(feats), 300)
    stages = []
    for name, laps in times.items():
        in_seq = float(np.median(laps))
        hot = alone.get(name)
        stages.append(
            {
                "stage": name,
                "in_sequence_ms": in_seq,
                "alone_ms": hot,
                "ratio_in_sequence_to_alone": in_seq / hot if hot else None,
            }
        )
        ratio = f"{in_seq / hot:.1f}x" if hot else ""
        alone_ms = f"{hot:6.3f} ms" if hot else ""
        print(f"  {name:40s} in sequence {in_seq:6.3f} ms  alone {alone_ms}  {ratio}")
    rows_out = {
        "rows": len(rows),
        "passes": a.passes,
        "p50_ms": float(np.median(best)),
        "p90_ms": float(np.percentile(best, 90)),
        "max_ms": float(best.max()),
        "heaviest_row_events": int(max(r[0].nnz for r in rows)),
        "median_row_events": int(median_row[0].nnz),
    }
    print(
        f"rows: p50 {rows_out['p50_ms']:.3f} ms, p90 {rows_out['p90_ms']:.3f} ms, heaviest "
        f"({rows_out['heaviest_row_events']} events) {rows_out['max_ms']:.3f} ms"
    )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps({"home": str(a.home), "rows": rows_out, "stages": stages}, indent=2)
    )


if __name__ == "__main__":
    main()
