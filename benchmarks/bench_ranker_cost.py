"""Quality against per-request cost of ``ranked`` configurations, on the validation split.

The per-request path of ``ranked`` (every user with feedback since training, every cold
start) spends most of its time on the candidate pool: six sources' top ``per_source`` each,
47 features per candidate and the compiled trees (LightGBM's early stopping decides how many).
This benchmark fits each configuration on the validation split of a protocol (never the test
split), measures NDCG and recall there, and measures the in-process cost of scoring one
fold-in history row with the trees compiled (lleaves, as the service runs them) and BLAS on
one thread: rows of the validation users' histories, in batches of 4 (the service batcher's
mean under 8 connections) and alone. Costs are measured after every fit, in alternating
rounds over the configurations (the minimum of the rounds), so machine noise hits all of
them alike; the default configuration is the baseline of every ratio.

    python benchmarks/bench_ranker_cost.py --seeds 2
    python benchmarks/bench_ranker_cost.py --variant per_source=100,learning_rate=0.1

Writes JSON (``benchmarks/results/ranker-cost.json``) and a plot of NDCG@10 against the
cost of a row (``docs/results/ranker-cost.png``).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from movierec.data.catalog import Catalog
from movierec.data.splits import make_split
from movierec.data.tables import load_tables
from movierec.evaluation.runner import _diagnostics, evaluate_split, protocol_params
from movierec.models.base import TrainOptions
from movierec.ranking.ranker import RankedRecommender
from movierec.settings import Settings
from movierec.strategies import create

logger = logging.getLogger("bench_ranker_cost")

#: Configurations compared by default (overrides of the defaults; ``{}`` is the baseline).
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "lr0.1": {"learning_rate": 0.1},
    "ps100": {"per_source": 100},
    "ps100-lr0.1": {"per_source": 100, "learning_rate": 0.1},
    "ps75-lr0.1": {"per_source": 75, "learning_rate": 0.1},
    "ps50-lr0.1": {"per_source": 50, "learning_rate": 0.1},
    "lr0.1-leaves15": {"learning_rate": 0.1, "num_leaves": 15},
    "ps75-lr0.1-leaves15": {"per_source": 75, "learning_rate": 0.1, "num_leaves": 15},
}


def _parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {}
    for part in re.split(r",(?=\s*\w+=)", text):  # a JSON value may hold commas
        key, _, value = part.partition("=")
        params[key.strip()] = json.loads(value) if value else None
    return text, params


def _cost(model: RankedRecommender, rows: Any, ts: Any, batch: int) -> float:
    """Milliseconds a row of ``score_rows`` over ``rows`` in batches of ``batch``."""
    n = rows.shape[0] - rows.shape[0] % batch
    t0 = time.perf_counter()
    for a in range(0, n, batch):
        model.score_rows(rows[a : a + batch], ts[a : a + batch])
    return (time.perf_counter() - t0) / n * 1000


def main() -> None:
    """Fit, evaluate and time every configuration; write the JSON and the plot."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--dataset", default="ml-latest-small")
    p.add_argument("--protocol", default="leave-last-out")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--rows", type=int, default=200, help="Validation users timed per config.")
    p.add_argument("--rounds", type=int, default=5, help="Alternating timing rounds (minimum).")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help="key=value[,key=value] overrides of ranked's config (repeatable; default: a grid)",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/ranker-cost.json"))
    p.add_argument("--plot", type=Path, default=Path("docs/results/ranker-cost.png"))
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    variants = dict([_parse_variant(v) for v in a.variant]) if a.variant else dict(VARIANTS)
    variants = {"default": {}, **variants}
    tables = load_tables(a.dataset, Settings())
    ks = [10, 20]
    quality: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    kept: dict[str, RankedRecommender] = {}
    timed: Any = None
    cache = Path(tempfile.mkdtemp()) / "ranker"
    for seed in range(a.seeds):
        split = make_split(a.protocol, tables.ratings, seed, "valid")
        catalog = Catalog.build(split.train.items, tables.movies, tables.tags)
        train = split.train.with_side(catalog)
        options = TrainOptions(seed=seed, future_targets=True)
        for name, params in variants.items():
            t0 = time.perf_counter()
            cfg = protocol_params("ranked", params, a.protocol)
            model = create("ranked", cfg).fit(train, options)
            assert isinstance(model, RankedRecommender)
            fit_s = time.perf_counter() - t0
            res = evaluate_split(model, split, ks, catalog, None)
            res |= _diagnostics(model, split)
            booster = model.learned.booster
            row = {
                "ndcg@10": res["ndcg@10"],
                "recall@10": res["recall@10"],
                "ndcg@20": res["ndcg@20"],
                "recall@20": res["recall@20"],
                "candidate_recall": res.get("candidate_recall/pool", float("nan")),
                "pool_size": res.get("candidate_pool_size", float("nan")),
                "trees": float(booster.num_trees()) if booster is not None else 0.0,
                "fit_s": fit_s,
            }
            quality[name].append(row)
            logger.info("%s seed %d: %s", name, seed, {k: round(v, 4) for k, v in row.items()})
            if seed == 0:
                model.compile_ranker(cache)
                kept[name] = model
                if timed is None:
                    users = split.users
                    assert users is not None and model.history_ts is not None
                    pick = np.random.default_rng(0).choice(
                        users.size, min(a.rows, users.size), replace=False
                    )
                    sel = np.sort(users[pick])
                    timed = (model.history[sel], model.history_ts[sel])
            gc.collect()
    # the cost of a row: alternating rounds over the configurations, the minimum of each
    costs: dict[str, dict[str, list[float]]] = {n: {"batch4": [], "single": []} for n in kept}
    values, stamps = timed
    with threadpool_limits(1, "blas"):
        for model in kept.values():  # warm-up
            _cost(model, values, stamps, 4)
        for _ in range(a.rounds):
            for name, model in kept.items():
                costs[name]["batch4"].append(_cost(model, values, stamps, 4))
                costs[name]["single"].append(_cost(model, values[:100], stamps[:100], 1))
    base = {k: min(v) for k, v in costs["default"].items()}
    out: dict[str, Any] = {
        "benchmark": "ranker_cost",
        "dataset": a.dataset,
        "protocol": a.protocol,
        "stage": "valid",
        "seeds": a.seeds,
        "timed_rows": int(values.shape[0]),
        "rounds": a.rounds,
        "cpu": os.cpu_count(),
        "variants": {},
    }
    for name, params in variants.items():
        runs = quality[name]
        agg = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        ndcg = np.array([r["ndcg@10"] for r in runs])
        d = ndcg - np.array([r["ndcg@10"] for r in quality["default"]])
        cost = {k: min(v) for k, v in costs[name].items()}
        out["variants"][name] = {
            "params": params,
            **agg,
            "ndcg@10_se": float(ndcg.std(ddof=1) / np.sqrt(ndcg.size)) if ndcg.size > 1 else None,
            "ndcg@10_minus_default": float(d.mean()),
            "ndcg@10_minus_default_se": float(d.std(ddof=1) / np.sqrt(d.size))
            if d.size > 1
            else None,
            "per_seed": runs,
            "ms_per_row_batch4": cost["batch4"],
            "ms_per_row_single": cost["single"],
            "cost_ratio_batch4": cost["batch4"] / base["batch4"],
            "cost_ratio_single": cost["single"] / base["single"],
        }
        v = out["variants"][name]
        print(
            f"{name:>22}: ndcg@10 {v['ndcg@10']:.4f} ({v['ndcg@10_minus_default']:+.4f} vs "
            f"default), recall@10 {v['recall@10']:.4f}, pool {v['pool_size']:.0f}, trees "
            f"{v['trees']:.0f}; {v['ms_per_row_batch4']:.2f} ms a row in 4s "
            f"({v['cost_ratio_batch4']:.2f}x), {v['ms_per_row_single']:.2f} ms alone "
            f"({v['cost_ratio_single']:.2f}x)"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))
    _plot(out, a.plot)
    print(f"wrote {a.out} and {a.plot}")


def _plot(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, v in out["variants"].items():
        se = v["ndcg@10_se"] or 0.0
        ax.errorbar(v["ms_per_row_batch4"], v["ndcg@10"], yerr=se, fmt="o", capsize=3)
        ax.annotate(
            name,
            (v["ms_per_row_batch4"], v["ndcg@10"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel("ms of CPU a fold-in row (batches of 4, compiled trees, one thread)")
    ax.set_ylabel(f"NDCG@10 ({out['protocol']}, validation, {out['seeds']} seeds)")
    ax.set_title(f"ranked on {out['dataset']}: quality against per-request cost")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
