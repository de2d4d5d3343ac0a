"""Per-request fold-in scoring in-process, from 1, 2 and 8 threads at once (no HTTP).

What the service's worker threads do for users with a fresh like, without the event loop:
``Engine.recommend`` of 200 known users with one like each (the feedback-state cache off, so
each request is scored), called in a loop from ``n`` threads for a fixed time. Prints the
rate, the process CPU time per request and the batcher's mean batch, and the ratio of each
rate to the one-thread rate measured in the same run; writes JSON.

    python benchmarks/bench_foldin_threads.py --home .movierec/bench/service-small

The home is one that ``bench_service.py --catalog small --strategy ranked`` prepared (its
bundle holds ``ranked``). BLAS runs one thread, as in the service (``serve_blas_threads``).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from movierec.data.user_feedback import UserFeedback
from movierec.lifecycle.bundle import load_bundle
from movierec.ranking.ranker import RankedRecommender
from movierec.service.engine import Engine


def _run(engine: Engine, feedback: dict[int, UserFeedback], n_threads: int, secs: float) -> Any:
    users = list(feedback)
    counts = [0] * n_threads
    stop = time.perf_counter() + secs

    def loop(t: int) -> None:
        i = t
        while time.perf_counter() < stop:
            u = users[i % len(users)]
            engine.recommend(u, 10, "ranked", feedback=feedback[u])
            counts[t] += 1
            i += n_threads

    engine.batcher.rows = engine.batcher.batches = 0
    threads = [threading.Thread(target=loop, args=(t,)) for t in range(n_threads)]
    c0, t0 = time.process_time(), time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed, cpu, n = time.perf_counter() - t0, time.process_time() - c0, sum(counts)
    return {
        "threads": n_threads,
        "requests": n,
        "rps": n / elapsed,
        "cpu_ms_per_request": cpu / max(n, 1) * 1000,
        "mean_batch": engine.batcher.rows / max(engine.batcher.batches, 1),
    }


def home_parser(doc: str | None, out: str) -> argparse.ArgumentParser:
    """Options of an in-process benchmark of a bench home: ``--home`` and ``--out``."""
    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    p.add_argument("--home", type=Path, default=Path(".movierec/bench/service-small"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results") / out)
    return p


def fresh_likes(home: Path) -> tuple[Engine, RankedRecommender, dict[int, UserFeedback]]:
    """The bench home's engine (every fold-in scored), its ranker with compiled trees, and
    the service benchmark's users with a fresh like: the last 200, one like each."""
    bundle = load_bundle(home / "bundles")
    model = bundle.models["ranked"]
    assert isinstance(model, RankedRecommender) and model.store is not None
    model.compile_ranker(home / "cache" / "ranker")  # where the service keeps it
    engine = Engine(bundle, cache_feedback=False)
    movies = [int(m) for m in bundle.items.ids[:2000]]
    feedback = {}
    for u in [int(x) for x in bundle.users.ids.tolist()][-200:]:
        fb = UserFeedback()
        fb.apply(movies[u % len(movies)], "like", time.time())
        feedback[u] = fb
    return engine, model, feedback


def main() -> None:
    """Measure and write the JSON."""
    p = home_parser(__doc__, "foldin-threads.json")
    p.add_argument("--seconds", type=float, default=4.0)
    a = p.parse_args()
    engine, _, feedback = fresh_likes(a.home)
    with threadpool_limits(1, "blas"):
        _run(engine, feedback, 1, 1.0)  # warm-up
        rows = [_run(engine, feedback, n, a.seconds) for n in (1, 2, 8)]
    base = rows[0]["rps"]
    for r in rows:
        r["ratio_to_one_thread"] = r["rps"] / base
        print(
            f"threads {r['threads']}: {r['rps']:.0f} req/s ({r['ratio_to_one_thread']:.2f}x), "
            f"CPU {r['cpu_ms_per_request']:.2f} ms a request, mean batch {r['mean_batch']:.1f}"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"home": str(a.home), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
