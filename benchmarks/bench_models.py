"""Model benchmarks, each against a baseline measured in the same run (JSON output).

    python benchmarks/bench_models.py als      # our ALS fit vs bare implicit, same matrix/threads
    python benchmarks/bench_models.py scoring  # batch recommend vs numpy matmul + argpartition
    python benchmarks/bench_models.py ease     # EASE fit (Cholesky, float32) vs numpy inv float64

Options: --ratings (synthetic size for als), --items (catalog size for scoring),
--data-dir (MovieLens folder for ease), --out (JSON file).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _synthetic_data(ratings: int, movies: int | None = None) -> Any:
    from movierec.data.ingest import ingest_and_load
    from movierec.data.store import ParquetStore
    from movierec.data.synthetic import SynthConfig, generate

    suffix = "" if movies is None else f"-{movies}"
    folder = Path(".movierec/bench") / f"synth-{ratings}{suffix}"
    if not (folder / "ratings.csv").exists():
        generate(folder, SynthConfig(ratings=ratings, movies=movies))
    _, data = ingest_and_load(ParquetStore(folder / "store"), folder / "ratings.csv", force=True)
    return data


def bench_als(ratings: int, factors: int, iterations: int, repeats: int) -> dict[str, Any]:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from movierec.models import TrainOptions
    from movierec.strategies import create

    data = _synthetic_data(ratings)
    config = {"factors": factors, "iterations": iterations}
    weighted = create("als", config).weigh(data.matrix)  # the matrix both sides train on
    threads = os.cpu_count() or 1
    bare_times, ours_times = [], []
    for _ in range(repeats):  # alternate the sides so that a transient load hits both
        t0 = time.perf_counter()
        with threadpool_limits(1, "blas"):
            bare = AlternatingLeastSquares(
                factors=factors,
                iterations=iterations,
                regularization=0.05,
                random_state=0,
                num_threads=threads,
            )
            bare.fit(weighted, show_progress=False)
        bare_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        create("als", config).fit(data, TrainOptions(seed=0, threads=threads))
        ours_times.append(time.perf_counter() - t0)
    bare_s, ours_s = min(bare_times), min(ours_times)
    return {
        "benchmark": "als_fit",
        "repeats": repeats,
        "bare_runs_s": bare_times,
        "movierec_runs_s": ours_times,
        "interactions": data.nnz,
        "users": data.n_users,
        "items": data.n_items,
        "factors": factors,
        "iterations": iterations,
        "threads": threads,
        "bare_implicit_s": bare_s,
        "movierec_s": ours_s,
        "overhead": ours_s / bare_s - 1.0,
        "target_overhead_max": 0.10,
    }


def bench_scoring(items: int, users: int, factors: int, k: int, batch: int) -> dict[str, Any]:
    from movierec.models import TrainOptions
    from movierec.strategies import create

    ratings = max(users * 40, items * 10)
    data = _synthetic_data(ratings, movies=items)
    model = create("als", {"factors": factors, "iterations": 1}).fit(data, TrainOptions(seed=0))
    n = min(users, data.n_users)
    ids = np.arange(n)
    uf = model.user_factors  # type: ignore[attr-defined]
    itf = model.item_factors  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        scores = uf[s : s + batch] @ itf.T
        np.argpartition(-scores, k, axis=1)[:, :k]
    base_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        model.recommend(ids[s : s + batch], k)
    ours_s = time.perf_counter() - t0
    cores = len(os.sched_getaffinity(0))
    return {
        "benchmark": "batch_scoring",
        "items": data.n_items,
        "users_scored": n,
        "factors": factors,
        "k": k,
        "batch": batch,
        "cores": cores,
        "numpy_users_per_s_per_core": n / base_s / cores,
        "movierec_users_per_s_per_core": n / ours_s / cores,
        "ratio_vs_numpy": base_s / ours_s,
        "note": "movierec also masks seen items and sorts the top k; numpy does neither",
    }


def _ease_side(side: str, data_dir: Path) -> dict[str, Any]:
    from movierec.data.interactions import InteractionData
    from movierec.data.movielens import load_release
    from movierec.strategies import create

    ratings = load_release(data_dir / "ml-latest-small", kinds=("ratings",)).tables["ratings"].table
    data = InteractionData.from_table(ratings)
    t0 = time.perf_counter()
    if side == "ours":
        model = create("ease", {"min_count": 1}).fit(data)
        kept = int(model.kept.size)  # type: ignore[attr-defined]
    else:
        x = data.matrix.copy()
        x.data[:] = 1.0
        g = (x.T @ x).toarray().astype(np.float64)
        g[np.diag_indices_from(g)] += 400.0
        p = np.linalg.inv(g)
        b = -p / np.diag(p)
        np.fill_diagonal(b, 0.0)
        kept = int(b.shape[0])
    return {"seconds": time.perf_counter() - t0, "items": kept, "peak_rss_mb": _rss_mb()}


def bench_ease(data_dir: Path) -> dict[str, Any]:
    def run(side: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, __file__, "ease-side", "--side", side, "--data-dir", str(data_dir)],
            check=True,
            capture_output=True,
            text=True,
        )
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    ours, base = run("ours"), run("numpy")
    return {
        "benchmark": "ease_fit",
        "dataset": "ml-latest-small (all 9,724 rated items)",
        "movierec": ours,
        "numpy_inv_float64": base,
        "time_ratio_vs_numpy": ours["seconds"] / base["seconds"],
        "memory_ratio_vs_numpy": ours["peak_rss_mb"] / base["peak_rss_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("what", choices=["als", "scoring", "ease", "ease-side"])
    parser.add_argument("--ratings", type=int, default=20_000_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--items", type=int, default=60_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("MOVIEREC_DATA_DIR", "."))
    )
    parser.add_argument("--side", default="ours")
    parser.add_argument("--out", type=Path, default=None)
    a = parser.parse_args()
    if a.what == "ease-side":
        print(json.dumps(_ease_side(a.side, a.data_dir)))
        return
    if a.what == "als":
        result = bench_als(a.ratings, a.factors, a.iterations, a.repeats)
        line = (
            f"ALS fit on {result['interactions']:,} interactions: "
            f"movierec {result['movierec_s']:.1f} s, "
            f"bare implicit {result['bare_implicit_s']:.1f} s, overhead {result['overhead']:+.1%} "
            f"(target <= +10%)"
        )
    elif a.what == "scoring":
        result = bench_scoring(a.items, a.users, a.factors, a.k, a.batch)
        line = (
            f"batch top-{a.k} over {result['items']:,} items: movierec "
            f"{result['movierec_users_per_s_per_core']:,.0f} users/s/core, "
            f"numpy matmul+argpartition "
            f"{result['numpy_users_per_s_per_core']:,.0f} users/s/core "
            f"(ratio {result['ratio_vs_numpy']:.2f})"
        )
    else:
        result = bench_ease(a.data_dir)
        line = (
            f"EASE fit on ml-latest-small: movierec {result['movierec']['seconds']:.1f} s / "
            f"{result['movierec']['peak_rss_mb']:.0f} MB, numpy inv float64 "
            f"{result['numpy_inv_float64']['seconds']:.1f} s / "
            f"{result['numpy_inv_float64']['peak_rss_mb']:.0f} MB "
            f"(time ratio {result['time_ratio_vs_numpy']:.2f})"
        )
    out = a.out or Path("benchmarks/results") / f"{a.what}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(line + f"; wrote {out}")


if __name__ == "__main__":
    main()
