"""Model reports: accuracy, latency, throughput, size and training cost per model.

What the reference service prints per model (Hit@20, inference latency avg/p95, throughput,
model size, training cost), measured here in-process on one protocol split:

* **accuracy** – the runner's metrics at each k on the split's held-out interactions;
* **latency** – one query row per call (``single_*``) and 1,000 rows per call (``batch_*``),
  both the known-user path (``recommend``) or the fold-in path (``recommend_history``) the
  protocol uses; average and 95th percentile in milliseconds; throughput in users per second;
* **size** – on disk (the model's folder without the shared history, as in a bundle) and in
  memory (bytes of the NumPy/SciPy arrays the fitted model holds);
* **training cost** – wall and CPU seconds of ``fit`` and the peak resident set size of the
  process while it ran (sampled every 10 ms), with the growth over the size before the fit.
"""

from __future__ import annotations

import logging
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec.data.catalog import Catalog
from movierec.data.splits import DESCRIPTIONS, Protocol, Split, make_split
from movierec.data.tables import Tables
from movierec.evaluation.runner import (
    FUTURE_TARGET_PROTOCOLS,
    evaluate_split,
    protocol_params,
)
from movierec.models.base import Recommender, TrainOptions
from movierec.strategies import create

logger = logging.getLogger(__name__)

#: Query rows timed one per call, and rows per call of the batch measurement.
SINGLE_REQUESTS = 200
BATCH_USERS = 1000
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; else the lifetime peak)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Cost:
    """Wall and CPU seconds and the peak RSS of a measured block (filled when it ends)."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    rss_before: int = 0
    peak_rss: int = 0

    def to_dict(self, prefix: str = "fit") -> dict[str, float]:
        """``{prefix}_seconds``, ``_cpu_seconds``, ``_peak_rss_mb``, ``_rss_growth_mb``."""
        return {
            f"{prefix}_seconds": self.wall_s,
            f"{prefix}_cpu_seconds": self.cpu_s,
            f"{prefix}_peak_rss_mb": self.peak_rss / 2**20,
            f"{prefix}_rss_growth_mb": max(0, self.peak_rss - self.rss_before) / 2**20,
        }


@contextmanager
def measure(interval: float = 0.01) -> Iterator[Cost]:
    """Measure the block's wall and CPU time and sample the process RSS while it runs."""
    cost = Cost(rss_before=rss_bytes())
    cost.peak_rss = cost.rss_before
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            cost.peak_rss = max(cost.peak_rss, rss_bytes())

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        yield cost
    finally:
        cost.wall_s = time.perf_counter() - w0
        cost.cpu_s = time.process_time() - c0
        stop.set()
        sampler.join()
        cost.peak_rss = max(cost.peak_rss, rss_bytes())


def memory_bytes(obj: Any, _seen: set[int] | None = None, _depth: int = 0) -> int:
    """Bytes of the NumPy arrays and SciPy sparse matrices reachable from ``obj``.

    Walks attributes, dicts, lists and tuples (each object once, eight levels deep); views
    count their base once.
    """
    seen = _seen if _seen is not None else set()
    if id(obj) in seen or _depth > 8:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        base = obj.base if isinstance(obj.base, np.ndarray) else None
        if base is not None:
            return memory_bytes(base, seen, _depth + 1)
        return int(obj.nbytes)
    if sp.issparse(obj):
        return sum(
            memory_bytes(getattr(obj, a), seen, _depth + 1)
            for a in ("data", "indices", "indptr", "row", "col")
            if hasattr(obj, a)
        )
    if isinstance(obj, dict):
        return sum(memory_bytes(v, seen, _depth + 1) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(memory_bytes(v, seen, _depth + 1) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return sum(memory_bytes(v, seen, _depth + 1) for v in vars(obj).values())
    return 0


def disk_bytes(model: Recommender) -> int:
    """Bytes the model's folder takes in a bundle (its arrays, not the shared history)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "m", with_history=False)
        return sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())


def _percentiles(times: list[float]) -> dict[str, float]:
    arr = np.asarray(times) * 1000.0
    return {"avg_ms": float(arr.mean()), "p95_ms": float(np.percentile(arr, 95))}


def latency(
    model: Recommender, split: Split, k: int, requests: int = SINGLE_REQUESTS
) -> dict[str, float]:
    """Single-request and batch latency and throughput on the split's query rows."""
    n = split.truth.shape[0]
    if n == 0:
        return {}

    def call(start: int, stop: int) -> None:
        if split.users is not None:
            model.recommend(split.users[start:stop], k)
        else:
            assert split.history is not None
            ts = split.history_ts[start:stop] if split.history_ts is not None else None
            model.recommend_history(split.history[start:stop], k, timestamps=ts)

    rows = np.random.default_rng(0).choice(n, size=min(requests, n), replace=False)
    call(int(rows[0]), int(rows[0]) + 1)  # first call pays lazy set-up: not a request
    single = []
    for r in rows:
        t0 = time.perf_counter()
        call(int(r), int(r) + 1)
        single.append(time.perf_counter() - t0)
    size = min(BATCH_USERS, n)
    batches = []
    for start in range(0, max(n - size, 0) + 1, size):
        t0 = time.perf_counter()
        call(start, start + size)
        batches.append(time.perf_counter() - t0)
        if len(batches) >= 5:
            break
    one, many = _percentiles(single), _percentiles(batches)
    return {
        "single_avg_ms": one["avg_ms"],
        "single_p95_ms": one["p95_ms"],
        "single_users_per_s": 1000.0 / one["avg_ms"],
        "batch_users": float(size),
        "batch_avg_ms": many["avg_ms"],
        "batch_p95_ms": many["p95_ms"],
        "batch_users_per_s": size * 1000.0 / many["avg_ms"],
    }


def model_report(
    tables: Tables,
    protocol: Protocol,
    models: list[str],
    ks: list[int],
    params: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    dataset: str = "",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit each model on one split of ``protocol`` and measure it (see the module docstring).

    Returns:
        ``{"dataset", "protocol", "protocol_description", "k", "seed", "models": {name:
        {metric: value, "fit_seconds", "fit_cpu_seconds", "fit_peak_rss_mb", ...}}}``.
    """
    params = params or {}
    split = make_split(protocol, tables.ratings, seed, "test")
    catalog = Catalog.build(split.train.items, tables.movies, tables.tags)
    train = split.train.with_side(catalog)
    options = TrainOptions(seed=seed, future_targets=protocol in FUTURE_TARGET_PROTOCOLS)
    out: dict[str, dict[str, Any]] = {}
    for name in models:
        if progress is not None:
            progress(name)
        model = create(name, protocol_params(name, params.get(name), protocol))
        with measure() as cost:
            model.fit(train, options)
        row: dict[str, Any] = evaluate_split(model, split, ks, catalog, None)
        row |= cost.to_dict("fit")
        row |= latency(model, split, max(ks))
        row["size_on_disk_mb"] = disk_bytes(model) / 2**20
        row["size_in_memory_mb"] = memory_bytes(model) / 2**20
        out[name] = row
        logger.info(
            "%s: ndcg@%d %.4f, single p95 %.2f ms, fit %.1f s",
            name,
            ks[0],
            row.get(f"ndcg@{ks[0]}", float("nan")),
            row.get("single_p95_ms", float("nan")),
            row["fit_seconds"],
        )
    return {
        "dataset": dataset,
        "protocol": protocol,
        "protocol_description": DESCRIPTIONS[protocol],
        "k": ks,
        "seed": seed,
        "latency_protocol": (
            f"in-process, one thread; single: {SINGLE_REQUESTS} query rows one per call "
            f"(after one warm-up call); batch: up to 5 calls of {BATCH_USERS} rows"
        ),
        "models": out,
    }


#: Report columns: (key, header, format).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("hit@{k}", "hit@{k}", "{:.4f}"),
    ("ndcg@{k}", "ndcg@{k}", "{:.4f}"),
    ("single_avg_ms", "1 user avg ms", "{:.2f}"),
    ("single_p95_ms", "1 user p95 ms", "{:.2f}"),
    ("batch_users_per_s", "batch users/s", "{:,.0f}"),
    ("size_on_disk_mb", "disk MB", "{:.1f}"),
    ("size_in_memory_mb", "memory MB", "{:.1f}"),
    ("fit_seconds", "fit s", "{:.1f}"),
    ("fit_cpu_seconds", "fit CPU s", "{:.1f}"),
    ("fit_peak_rss_mb", "peak RSS MB", "{:,.0f}"),
)


def report_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of a report (one row per model)."""
    k = report["k"][-1]
    header = ["model", *[h.format(k=k) for _, h, _ in COLUMNS]]
    rows = []
    for name, vals in report["models"].items():
        cells = []
        for key, _, fmt in COLUMNS:
            v = vals.get(key.format(k=k))
            cells.append("-" if v is None else fmt.format(v))
        rows.append([name, *cells])
    return header, rows


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Four panels per model: accuracy, latency (avg and p95), size, training cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(report["models"])
    vals = report["models"]
    k = report["k"][-1]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    x = np.arange(len(models))
    panels = (
        (axes[0], (f"hit@{k}", f"ndcg@{k}"), "accuracy"),
        (axes[1], ("single_avg_ms", "single_p95_ms"), "latency per single request (ms, log)"),
        (axes[2], ("size_on_disk_mb", "size_in_memory_mb"), "size (MB, log)"),
        (axes[3], ("fit_seconds", "fit_cpu_seconds"), "training (s, log)"),
    )
    for ax, keys, title in panels:
        width = 0.8 / len(keys)
        for j, key in enumerate(keys):
            ys = [max(float(vals[m].get(key, 0.0)), 1e-6) for m in models]
            ax.bar(x + j * width, ys, width, label=key)
        ax.set_xticks(x + width * (len(keys) - 1) / 2, models, rotation=30, fontsize=8)
        ax.set_title(title)
        if "log" in title:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(f"{report.get('dataset', '')} · {report['protocol']} · model report")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
