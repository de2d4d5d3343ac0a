"""Online evaluation: which served lists converted into watches, per variant and over time.

A served list **converts** when its user watches one of its movies within the attribution
window after it was served (event times). Watch-through rate (WTR) = converted lists / lists;
the hit position is the rank (1-based) of the first watched movie of a converted list. The
variant of a list is read from the server field of its log line: ``<experiment>/<variant>``
for an A/B test, ``<experiment>/interleaved/<teams>`` for an interleaved list (one letter per
position: which ranker drafted it); lists of no experiment count under their server name.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from movierec.data.feedback import FeedbackStore
from movierec.data.served import ServedLog
from movierec.experiments.design import Experiment
from movierec.experiments.interleave import credit
from movierec.experiments.stats import mean_diff, msprt_from, sign_test, srm, wilson


@dataclass(frozen=True)
class Label:
    """What a served list belongs to."""

    experiment: str | None
    variant: str
    teams: str | None = None


def label_of(server: str) -> Label:
    """Parse the server field of a served list."""
    parts = server.split("/")
    if len(parts) == 3 and parts[1] == "interleaved":
        return Label(parts[0], "interleaved", parts[2])
    if len(parts) == 2:
        return Label(parts[0], parts[1])
    return Label(None, server or "unknown")


def watch_index(watches: list[dict[str, Any]]) -> dict[int, tuple[list[float], list[int]]]:
    """Per user: watch times (sorted) and the movie of each."""
    by_user: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for w in watches:
        by_user[int(w["user_id"])].append((float(w["timestamp"]), int(w["movie_id"])))
    out = {}
    for u, events in by_user.items():
        events.sort()
        out[u] = ([t for t, _ in events], [m for _, m in events])
    return out


def watched_after(
    index: dict[int, tuple[list[float], list[int]]], user: int, t: float, window_s: float
) -> set[int]:
    """Movies the user watched in ``[t, t + window_s]``."""
    if user not in index:
        return set()
    times, movies = index[user]
    lo = bisect.bisect_left(times, t)
    hi = bisect.bisect_right(times, t + window_s)
    return set(movies[lo:hi])


def evaluate_online(
    served: list[dict[str, Any]],
    watches: list[dict[str, Any]],
    window_s: float,
    bucket_s: float = 3600.0,
) -> dict[str, Any]:
    """WTR with 95% Wilson intervals, conversions and hit position per variant and time bucket.

    Returns:
        ``{"window_s", "variants": {key: {"lists", "conversions", "wtr", "ci",
        "mean_hit_position"}}, "over_time": {key: [{"t", "lists", "conversions", "wtr",
        "ci"}]}, "interleaving": {experiment: {"impressions", "wins_a", "wins_b", "ties",
        "p"}}}``; keys are ``experiment/variant`` or the server name.
    """
    index = watch_index(watches)
    agg: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"lists": 0, "conversions": 0, "pos": [], "per_user": defaultdict(lambda: [0, 0])}
    )
    timeline: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    inter: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # impressions, a, b, ties
    for row in served:
        lab = label_of(str(row.get("server", "")))
        key = f"{lab.experiment}/{lab.variant}" if lab.experiment else lab.variant
        items = list(row["items"])
        seen = watched_after(index, int(row["user_id"]), float(row["timestamp"]), window_s)
        hits = [i for i, m in enumerate(items) if m in seen]
        a = agg[key]
        a["lists"] += 1
        mine = a["per_user"][int(row["user_id"])]
        mine[0] += 1
        slot = timeline[key][int(float(row["timestamp"]) // bucket_s)]
        slot[0] += 1
        if hits:
            mine[1] += 1
            a["conversions"] += 1
            a["pos"].append(hits[0] + 1)
            slot[1] += 1
        if lab.teams is not None and lab.experiment is not None:
            ca, cb = credit(items, lab.teams, seen)
            rec = inter[lab.experiment]
            rec[0] += 1
            rec[1] += int(ca > cb)
            rec[2] += int(cb > ca)
            rec[3] += int(ca == cb and ca > 0)
    variants = {
        key: {
            "lists": a["lists"],
            "conversions": a["conversions"],
            "wtr": a["conversions"] / a["lists"] if a["lists"] else 0.0,
            "ci": wilson(a["conversions"], a["lists"]),
            "mean_hit_position": sum(a["pos"]) / len(a["pos"]) if a["pos"] else None,
            "users": len(a["per_user"]),
            "user_wtr": [c / n for n, c in a["per_user"].values()],
        }
        for key, a in sorted(agg.items())
    }
    over_time = {
        key: [
            {"t": b * bucket_s, "lists": n, "conversions": c, "wtr": c / n, "ci": wilson(c, n)}
            for b, (n, c) in sorted(buckets.items())
        ]
        for key, buckets in timeline.items()
    }
    interleaving = {
        exp: {
            "impressions": r[0],
            "wins_a": r[1],
            "wins_b": r[2],
            "ties": r[3],
            "p": sign_test(r[1], r[2]),
        }
        for exp, r in inter.items()
    }
    return {
        "window_s": window_s,
        "variants": variants,
        "over_time": over_time,
        "interleaving": interleaving,
    }


def online_from_store(store: FeedbackStore, window_s: float) -> dict[str, Any]:
    """Served lists and watches from the store (feedback and served tables), evaluated."""
    served = ServedLog(store.engine).rows()
    watches = store.since(0, signal="watch")
    return evaluate_online(served, watches, window_s)


def ab_report(
    online: dict[str, Any],
    exp: Experiment,
    alpha: float = 0.05,
    tau: float = 0.05,
    final: bool = False,
) -> dict[str, Any]:
    """Each variant against the control (the first): WTR, and tests with the user as the unit.

    While the experiment runs (``final=False``) verdicts come from the always-valid p-value,
    safe at every look; at its planned end (``final=True``) from the fixed-horizon z-test.

    Assignment is per user and one user's lists are not independent, so the tests compare the
    users' own watch-through rates (mean over users; Welch z-test, and the always-valid
    mSPRT p-value that stays valid however often one looks), and the sample-ratio check
    counts users; WTR per list is reported beside them.
    """
    control = exp.variants[0].name
    vals = online["variants"]
    empty: dict[str, Any] = {"lists": 0, "conversions": 0, "wtr": 0.0, "users": 0, "user_wtr": []}
    c = vals.get(f"{exp.name}/{control}", empty)
    rows = []
    for v in exp.variants:
        got = vals.get(f"{exp.name}/{v.name}", empty)
        per_user = got["user_wtr"]
        row: dict[str, Any] = {
            "variant": v.name,
            "weight": v.weight,
            "lists": got["lists"],
            "conversions": got["conversions"],
            "wtr": got["wtr"],
            "ci": wilson(got["conversions"], got["lists"]),
            "users": got["users"],
            "mean_user_wtr": sum(per_user) / len(per_user) if per_user else 0.0,
        }
        if v.name != control:
            diff, var, z, p = mean_diff(c["user_wtr"], per_user)
            seq = msprt_from(diff, var, tau)
            row |= {"diff": diff, "z": z, "p": p, "always_valid_p": seq}
            if (p if final else seq) < alpha:
                row["verdict"] = "better than control" if diff > 0 else "worse than control"
            else:
                row["verdict"] = "no significant difference"
        rows.append(row)
    counts = [r["users"] for r in rows]
    chi2, p_srm = srm(counts, [v.weight for v in exp.variants])
    best = [r for r in rows if r.get("verdict") == "better than control"]
    return {
        "experiment": exp.name,
        "control": control,
        "alpha": alpha,
        "decided_by": "fixed-horizon z-test (planned end)" if final else "always-valid p",
        "variants": rows,
        "srm": {"chi2": chi2, "p": p_srm, "mismatch": p_srm < 0.001, "counts": counts},
        "winner": max(best, key=lambda r: r["mean_user_wtr"])["variant"] if best else None,
    }
