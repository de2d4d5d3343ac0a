"""Render docs/results/*.json (written by `movierec evaluate`) as README tables.

python benchmarks/results_tables.py            # print the markdown
python benchmarks/results_tables.py --readme   # replace the block between the markers in README.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path("docs/results")
START, END = "<!-- results:start -->", "<!-- results:end -->"
RANKING = ("leave-last-out", "temporal", "stratified", "strong-generalization")
COLS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "recall@50", "ndcg@50", "coverage@10")


def _cell(v: dict[str, Any], c: str) -> str:
    se = v.get(f"{c}_se")
    return f"{v[c]:.4f}" + (f" ± {se:.4f}" if se and c in ("recall@10", "ndcg@10") else "")


def _comparison(r: dict[str, Any]) -> list[str]:
    """``ranked`` minus the best single model, paired by seed (mean ± standard error)."""
    cmp = r.get("comparison") or {}
    best = cmp.get("best_single")
    if not best:
        return []
    d = cmp["differences"][best]
    metrics = [m for m in ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "recall@50", "ndcg@50")]
    metrics = [m for m in metrics if m in d]
    return [
        f"`ranked` minus the best single model (`{best}`, by NDCG@{r['k'][0]}), paired by seed:",
        "",
        "| | " + " | ".join(metrics) + " |",
        "| --- |" + " ---: |" * len(metrics),
        "| difference | "
        + " | ".join(f"{d[m]['diff']:+.4f} ± {d[m]['se']:.4f}" for m in metrics)
        + " |",
        "",
    ]


def ablation() -> str:
    """The ablation table of `movierec evaluate --ablation`."""
    path = RESULTS / "ablation-leave-last-out.json"
    if not path.exists():
        return ""
    r = json.loads(path.read_text())
    full = r["models"]["ranked"]
    diffs = (r.get("comparison") or {}).get("differences", {})
    lines = [
        f"**Ablation, {r['protocol']}**, {r['seeds']} seeds: `ranked` with one candidate source or "
        "one feature group removed, and with the HistGradientBoosting baseline learner. "
        "Difference = full `ranked` minus the variant, paired by seed (positive: the removed part "
        "helps).",
        "",
        "| variant | recall@10 | ndcg@10 | full minus variant, NDCG@10 | candidate recall (pool) |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| ranked (full) | {full['recall@10']:.4f} | {full['ndcg@10']:.4f} | – | "
        f"{full.get('candidate_recall/pool', float('nan')):.3f} |",
    ]
    for m, v in r["models"].items():
        if m == "ranked":
            continue
        d = diffs.get(m, {}).get("ndcg@10")
        diff = f"{d['diff']:+.4f} ± {d['se']:.4f}" if d else ""
        pool = v.get("candidate_recall/pool")
        lines.append(
            f"| {m} | {v['recall@10']:.4f} | {v['ndcg@10']:.4f} | {diff} | "
            + (f"{pool:.3f}" if pool is not None else "")
            + " |"
        )
    return "\n".join([*lines, ""])


def render() -> str:
    lines: list[str] = []
    for p in RANKING:
        path = RESULTS / f"{p}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        pop = r["models"].get("popularity", {})
        lines += [
            f"**{p}** — {r['protocol_description']}. {r['seeds']} seeds (mean ± standard "
            f"error); recency weighting {r.get('recency_weighting', '')}; test interactions "
            f"skipped: {r.get('skipped_test_interactions')}.",
            "",
            "| model | " + " | ".join(COLS) + " | beats popularity (NDCG@10) |",
            "| --- |" + " ---: |" * len(COLS) + " :---: |",
        ]
        for m, v in r["models"].items():
            beats = (
                "–"
                if m == "popularity"
                else ("yes" if v["ndcg@10"] > pop.get("ndcg@10", 0) else "**no**")
            )
            lines.append(f"| {m} | " + " | ".join(_cell(v, c) for c in COLS) + f" | {beats} |")
        lines.append("")
        lines += _comparison(r)
    k = RESULTS / "kfold-rating.json"
    if k.exists():
        r = json.loads(k.read_text())
        mf = r["models"]["mf"]
        lines += [
            f"**kfold-rating** — {r['protocol_description']}. {r['seeds']} seed(s).",
            "",
            "| model | RMSE | MAE |",
            "| --- | ---: | ---: |",
            f"| mf | {mf['rmse']:.4f} ± {mf.get('rmse_se', 0):.4f} "
            f"| {mf['mae']:.4f} ± {mf.get('mae_se', 0):.4f} |",
            "",
        ]
    lines.append(ablation())
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--readme", action="store_true")
    args = parser.parse_args()
    md = render()
    if not args.readme:
        print(md)
        return
    readme = Path("README.md")
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{md}\n{END}{tail}")


if __name__ == "__main__":
    main()
