"""Charts of evaluation results (matplotlib, written as PNG)."""

from __future__ import annotations

from typing import Any

import numpy as np


def plot_results(
    result: dict[str, Any], path: Any, metric_names: tuple[str, ...] = ("recall", "ndcg")
) -> None:
    """Bar chart of metrics per model and k, with standard-error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(result["models"])
    if result["protocol"] == "kfold-rating":
        names = ["rmse", "mae"]
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
        for ax, name in zip(axes, names, strict=True):
            vals = [result["models"][m][name] for m in models]
            errs = [result["models"][m].get(f"{name}_se", 0.0) for m in models]
            ax.bar(models, vals, yerr=errs, color="#3b6fb6", capsize=4)
            ax.set_title(name.upper())
    else:
        ks = result["k"]
        k0 = ks[0]
        groups = [
            g
            for g in ("cold", "warm", "heavy")
            if any(f"{g}:ndcg@{k0}" in result["models"][m] for m in models)
        ]
        panels = len(metric_names) + (1 if groups else 0)
        fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4))
        axes = np.atleast_1d(axes)
        width = 0.8 / max(len(models), 1)
        for ax, metric in zip(axes[: len(metric_names)], metric_names, strict=True):
            for j, m in enumerate(models):
                vals = [result["models"][m].get(f"{metric}@{k}", 0.0) for k in ks]
                errs = [result["models"][m].get(f"{metric}@{k}_se", 0.0) for k in ks]
                ax.bar(np.arange(len(ks)) + j * width, vals, width, yerr=errs, label=m, capsize=3)
            ax.set_xticks(np.arange(len(ks)) + width * (len(models) - 1) / 2, [f"@{k}" for k in ks])
            ax.set_title(metric)
        axes[0].legend(fontsize=8)
        if groups:  # NDCG at the first k per user-activity group
            ax = axes[-1]
            for j, m in enumerate(models):
                vals = [result["models"][m].get(f"{g}:ndcg@{k0}", 0.0) for g in groups]
                ax.bar(np.arange(len(groups)) + j * width, vals, width, label=m)
            ax.set_xticks(np.arange(len(groups)) + width * (len(models) - 1) / 2, groups)
            ax.set_title(f"ndcg@{k0} by user activity")
    fig.suptitle(
        f"{result.get('dataset', '')} · {result['protocol']} · {result.get('seeds', 1)} seed(s)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
