"""Ingest benchmark: a synthetic ratings.csv into the store and into InteractionData.

Baseline measured in the same run: ``pandas.read_csv`` + ``scipy.sparse.coo_matrix(...).tocsr()``
on the same file. Each side runs in its own subprocess so that its peak RSS is its own.

    python benchmarks/bench_ingest.py [--ratings 20000000] [--out benchmarks/results/ingest.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_ours(path: Path) -> dict[str, Any]:
    from movierec.data.ingest import ingest_and_load
    from movierec.data.store import ParquetStore

    with tempfile.TemporaryDirectory() as tmp:
        store = ParquetStore(Path(tmp))
        t0 = time.perf_counter()
        summary, data = ingest_and_load(store, path)
        t1 = time.perf_counter()
        stored = store.count("ratings")
    return {
        "seconds": t1 - t0,
        "rows": data.nnz,
        "stored_rows": stored,
        "rejects": summary.reports[0].reject_rows,
        "fingerprint": data.fingerprint.sha256,
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_pandas(path: Path) -> dict[str, Any]:
    import pandas as pd
    import scipy.sparse as sp

    t0 = time.perf_counter()
    df = pd.read_csv(path)
    t1 = time.perf_counter()
    m = sp.coo_matrix(
        (df["rating"].to_numpy(), (df["userId"].to_numpy(), df["movieId"].to_numpy()))
    )
    m = m.tocsr()
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "read_csv_s": t1 - t0,
        "csr_s": t2 - t1,
        "rows": int(m.nnz),
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_parse_floor(path: Path) -> dict[str, Any]:
    """Parsing alone with Arrow's multithreaded CSV reader: the floor of any validated ingest."""
    import pyarrow.csv as pacsv

    t0 = time.perf_counter()
    table = pacsv.read_csv(path)
    return {
        "seconds": time.perf_counter() - t0,
        "rows": table.num_rows,
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_reingest(path: Path) -> dict[str, Any]:
    """Second ingest of the same file: skipped by digest, data loaded from the Parquet store."""
    from movierec.data.ingest import ingest_and_load
    from movierec.data.interactions import InteractionData
    from movierec.data.store import ParquetStore
    from movierec.hashing import file_digest

    with tempfile.TemporaryDirectory() as tmp:
        store = ParquetStore(Path(tmp))
        ingest_and_load(store, path)
        t0 = time.perf_counter()
        counts = store.ingest(
            "ratings", store.read("ratings").slice(0, 0), source=str(path), digest=file_digest(path)
        )
        data = InteractionData.from_table(store.read("ratings"))
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "skipped": counts.skipped,
        "rows": data.nnz,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _side(name: str, path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--side", name, "--file", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ratings", type=int, default=20_000_000)
    parser.add_argument("--data", type=Path, default=None, help="Folder with ratings.csv")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ingest.json"))
    parser.add_argument(
        "--side", choices=["ours", "pandas", "parse", "reingest"], help=argparse.SUPPRESS
    )
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        sides = {
            "ours": run_ours,
            "pandas": run_pandas,
            "parse": run_parse_floor,
            "reingest": run_reingest,
        }
        print(json.dumps(sides[args.side](args.file)))
        return
    data = args.data or Path(".movierec/bench") / f"synth-{args.ratings}"
    if not (data / "ratings.csv").exists():
        from movierec.data.synthetic import SynthConfig, generate

        print(f"generating {args.ratings:,} synthetic ratings into {data} ...", flush=True)
        generate(data, SynthConfig(ratings=args.ratings))
    path = data / "ratings.csv"
    ours = _side("ours", path)
    base = _side("pandas", path)
    floor = _side("parse", path)
    again = _side("reingest", path)
    result = {
        "benchmark": "ingest",
        "file": str(path),
        "file_mb": path.stat().st_size / 1e6,
        "ratings": ours["rows"],
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "ours": ours,
        "pandas_baseline": base,
        "parse_floor_pyarrow": floor,
        "reingest_same_file": again,
        "parse_floor_ratio_vs_pandas": floor["seconds"] / base["seconds"],
        "time_ratio_vs_pandas": ours["seconds"] / base["seconds"],
        "rss_ratio_vs_pandas": ours["peak_rss_mb"] / base["peak_rss_mb"],
        "targets": {"time_ratio_max": 0.5, "peak_rss_mb_max": 3072},
    }
    result["meets_targets"] = result["time_ratio_vs_pandas"] <= 0.5 and ours["peak_rss_mb"] <= 3072
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(
        f"ingest {result['ratings']:,} ratings ({result['file_mb']:.0f} MB):\n"
        f"  movierec (validate + store + InteractionData): {ours['seconds']:.2f} s, "
        f"peak RSS {ours['peak_rss_mb']:.0f} MB\n"
        f"  pandas.read_csv + coo_matrix:                   {base['seconds']:.2f} s, "
        f"peak RSS {base['peak_rss_mb']:.0f} MB\n"
        f"  parse alone (pyarrow.csv, no checks):           {floor['seconds']:.2f} s "
        f"({result['parse_floor_ratio_vs_pandas']:.2f}x pandas)\n"
        f"  re-ingest of the same file (skipped by digest, loaded from Parquet): "
        f"{again['seconds']:.2f} s\n"
        f"  time ratio {result['time_ratio_vs_pandas']:.2f}x (target <= 0.5x), "
        f"memory ratio {result['rss_ratio_vs_pandas']:.2f}x; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
