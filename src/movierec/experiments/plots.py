"""Charts of online evaluation: WTR per variant with intervals, and WTR over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_online(online: dict[str, Any], path: Path, title: str = "online evaluation") -> None:
    """Left: WTR per variant with its 95% interval; right: WTR per time bucket with bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    names = list(online["variants"])
    vals = [online["variants"][n]["wtr"] for n in names]
    lo = [v - online["variants"][n]["ci"][0] for n, v in zip(names, vals, strict=True)]
    hi = [online["variants"][n]["ci"][1] - v for n, v in zip(names, vals, strict=True)]
    axes[0].bar(range(len(names)), vals, yerr=[lo, hi], capsize=4, color="#3b6fb6")
    axes[0].set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    axes[0].set_title(f"watch-through rate (window {online['window_s'] / 3600:g} h), 95% CI")
    for name, series in online["over_time"].items():
        t = [p["t"] for p in series]
        axes[1].plot(t, [p["wtr"] for p in series], marker="o", label=name)
        axes[1].fill_between(
            t, [p["ci"][0] for p in series], [p["ci"][1] for p in series], alpha=0.2
        )
    axes[1].set_title("WTR over time")
    axes[1].set_xlabel("event time (s)")
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
