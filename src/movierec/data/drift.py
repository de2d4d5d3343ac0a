"""Drift and data quality between two snapshots of interactions (or a description of one).

Indicators (``ref`` = reference, ``cur`` = current):

* ``rating_psi`` – population stability index of the rating distribution over half-star bins:
  ``sum((c - r) * ln(c / r))`` with shares floored at 1e-4;
* ``activity_ks`` – two-sample Kolmogorov–Smirnov statistic of interactions per user;
* ``top100_overlap`` – share of the 100 most-interacted items of ``ref`` also in ``cur``'s;
* ``gini_ref``, ``gini_cur``, ``gini_change`` – Gini coefficient of interactions per item;
* ``new_users``, ``new_items`` – share of ``cur``'s users (items) absent from ``ref``;
* ``reject_rate`` – rejected rows / input rows of the current snapshot's ingest, when known.

The level is ``strong`` when the PSI or the KS statistic reaches its strong threshold,
``moderate`` when either reaches its moderate one, else ``none`` (thresholds from settings:
PSI 0.1 / 0.25 as in the usual PSI rule of thumb, KS 0.1 / 0.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

Level = Literal["none", "moderate", "strong"]
LEVELS: tuple[Level, ...] = ("none", "moderate", "strong")
RATING_BINS = np.arange(0.5, 5.01, 0.5)
_FLOOR = 1e-4


@dataclass(frozen=True)
class Thresholds:
    """Moderate and strong thresholds of the PSI and the KS statistic."""

    psi_moderate: float = 0.1
    psi_strong: float = 0.25
    ks_moderate: float = 0.1
    ks_strong: float = 0.2


def psi(ref: np.ndarray, cur: np.ndarray) -> float:
    """Population stability index of two distributions given as counts over the same bins."""
    r = np.maximum(ref / max(ref.sum(), 1), _FLOOR)
    c = np.maximum(cur / max(cur.sum(), 1), _FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = equal, near 1 = concentrated)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = x.size
    if n == 0 or x.sum() == 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * np.sum(cum) / cum[-1]) / n)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic: the largest gap between the two ECDFs."""
    if a.size == 0 or b.size == 0:
        return 0.0
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def rating_counts(ratings: np.ndarray) -> np.ndarray:
    """Counts per half-star bin (values rounded to the nearest half star)."""
    idx = np.clip(np.round(np.asarray(ratings, np.float64) * 2).astype(np.int64) - 1, 0, 9)
    return np.bincount(idx, minlength=10).astype(np.float64)


def snapshot_summary(table: pa.Table) -> dict[str, Any]:
    """One snapshot: size, rating distribution, activity and popularity concentration."""
    users = table["user_id"].to_numpy()
    items = table["movie_id"].to_numpy()
    _, per_user = np.unique(users, return_counts=True)
    _, per_item = np.unique(items, return_counts=True)
    counts = rating_counts(table["rating"].to_numpy())
    ts = table["timestamp"].to_numpy()
    return {
        "rows": int(table.num_rows),
        "users": int(per_user.size),
        "items": int(per_item.size),
        "rating_share": (counts / max(counts.sum(), 1)).round(6).tolist(),
        "rating_mean": float(table["rating"].to_numpy().mean()) if table.num_rows else 0.0,
        "activity_median": float(np.median(per_user)) if per_user.size else 0.0,
        "activity_p90": float(np.percentile(per_user, 90)) if per_user.size else 0.0,
        "gini": gini(per_item),
        "time_from": int(ts.min()) if ts.size else None,
        "time_to": int(ts.max()) if ts.size else None,
    }


def _top(items: np.ndarray, n: int) -> set[int]:
    ids, counts = np.unique(items, return_counts=True)
    order = np.lexsort((ids, -counts))[:n]
    return set(ids[order].tolist())


def level_of(values: dict[str, float], th: Thresholds) -> Level:
    """``strong``, ``moderate`` or ``none`` from the PSI and KS values."""
    p, k = values["rating_psi"], values["activity_ks"]
    if p >= th.psi_strong or k >= th.ks_strong:
        return "strong"
    if p >= th.psi_moderate or k >= th.ks_moderate:
        return "moderate"
    return "none"


def compare(
    ref: pa.Table | None,
    cur: pa.Table,
    thresholds: Thresholds | None = None,
    reject_rate: float | None = None,
) -> dict[str, Any]:
    """The drift report of ``cur`` against ``ref`` (descriptive only when ``ref`` is None)."""
    th = thresholds or Thresholds()
    out: dict[str, Any] = {"current": snapshot_summary(cur), "reject_rate": reject_rate}
    if ref is None:
        out |= {"reference": None, "level": "none", "values": {}, "note": "no reference"}
        return out
    ru, cu = ref["user_id"].to_numpy(), cur["user_id"].to_numpy()
    ri, ci = ref["movie_id"].to_numpy(), cur["movie_id"].to_numpy()
    _, ref_act = np.unique(ru, return_counts=True)
    _, cur_act = np.unique(cu, return_counts=True)
    _, ref_pop = np.unique(ri, return_counts=True)
    _, cur_pop = np.unique(ci, return_counts=True)
    top_r, top_c = _top(ri, 100), _top(ci, 100)
    cur_users, cur_items = np.unique(cu), np.unique(ci)
    values = {
        "rating_psi": psi(
            rating_counts(ref["rating"].to_numpy()), rating_counts(cur["rating"].to_numpy())
        ),
        "activity_ks": ks_statistic(ref_act.astype(np.float64), cur_act.astype(np.float64)),
        "top100_overlap": len(top_r & top_c) / max(len(top_r), 1),
        "gini_ref": gini(ref_pop),
        "gini_cur": gini(cur_pop),
        "new_users": float(np.mean(~np.isin(cur_users, ru))) if cur_users.size else 0.0,
        "new_items": float(np.mean(~np.isin(cur_items, ri))) if cur_items.size else 0.0,
    }
    values["gini_change"] = values["gini_cur"] - values["gini_ref"]
    out |= {
        "reference": snapshot_summary(ref),
        "values": values,
        "level": level_of(values, th),
        "thresholds": th.__dict__,
    }
    return out


def at_or_above(level: str, bar: str) -> bool:
    """Whether ``level`` is at least ``bar`` (``none`` < ``moderate`` < ``strong``)."""
    return LEVELS.index(level) >= LEVELS.index(bar)


def plot_drift(report: dict[str, Any], path: Path) -> None:
    """Rating shares, indicator values against their thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(10)
    cur = report["current"]["rating_share"]
    if report.get("reference"):
        axes[0].bar(x - 0.2, report["reference"]["rating_share"], 0.4, label="reference")
    axes[0].bar(x + 0.2, cur, 0.4, label="current")
    axes[0].set_xticks(x, [f"{v:g}" for v in RATING_BINS], fontsize=8)
    axes[0].set_title("rating distribution")
    axes[0].legend(fontsize=8)
    vals = report.get("values") or {}
    names = [
        n
        for n in ("rating_psi", "activity_ks", "top100_overlap", "new_users", "new_items")
        if n in vals
    ]
    axes[1].barh(names, [vals[n] for n in names], color="#3b6fb6")
    th = report.get("thresholds") or {}
    for key, color in (("psi_moderate", "orange"), ("psi_strong", "red")):
        if key in th:
            axes[1].axvline(th[key], color=color, ls="--", lw=1, label=key)
    axes[1].legend(fontsize=7)
    axes[1].set_title(f"drift: {report['level']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
