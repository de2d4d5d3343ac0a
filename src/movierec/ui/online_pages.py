"""The "Experiments" and "Online" pages: what the API's online evaluation says."""

from __future__ import annotations

from typing import Any

import streamlit as st

from movierec.ui.client import ApiClient

WINDOWS = ("1h", "6h", "1d")


def _ci(row: dict[str, Any]) -> str:
    lo, hi = row["ci"]
    return f"{lo:.3f} – {hi:.3f}"


def experiments_page(api: ApiClient) -> None:
    """Variants, split, WTR over time with intervals, verdicts and the sample-ratio check."""
    st.title("Experiments")
    window = st.selectbox("Attribution window", WINDOWS, key="exp-window")
    data = api.experiments(window)
    if data.get("error"):
        st.error(f"The experiments file is not applied: {data['error']}")
    exp = data.get("experiment")
    if exp is None:
        st.info("No experiment in force: write MOVIEREC_HOME/experiments.json (see the README).")
        return
    rep = data["report"]
    st.subheader(f"{exp['name']} ({exp['kind']}, salt {exp['salt']})")
    if rep["srm"]["mismatch"]:
        st.warning(
            f"Sample ratio mismatch (p = {rep['srm']['p']:.2g}): users are not split as "
            "configured; do not trust this test until the cause is found."
        )
    st.dataframe(
        [
            {
                "variant": r["variant"],
                "weight": r["weight"],
                "users": r["users"],
                "lists": r["lists"],
                "WTR": round(r["wtr"], 4),
                "95% CI": _ci(r),
                "diff vs control": round(r["diff"], 4) if "diff" in r else None,
                "always-valid p": round(r["always_valid_p"], 4) if "always_valid_p" in r else None,
                "verdict": r.get("verdict", "control"),
            }
            for r in rep["variants"]
        ],
        key="exp-table",
    )
    st.markdown(f"**Winner:** {rep['winner'] or 'none yet'} · decided by {rep['decided_by']}")
    inter = data.get("interleaving")
    if inter:
        st.markdown(
            f"**Interleaving:** {inter['impressions']} impressions, A wins {inter['wins_a']}, "
            f"B wins {inter['wins_b']}, sign test p = {inter['p']:.3g}"
        )
    series = data.get("over_time") or {}
    if series:
        st.subheader("WTR over time (with the 95% interval of each hour)")
        chart: dict[str, dict[float, float]] = {}
        for name, points in series.items():
            chart[name] = {p["t"]: p["wtr"] for p in points}
            chart[f"{name} (low)"] = {p["t"]: p["ci"][0] for p in points}
            chart[f"{name} (high)"] = {p["t"]: p["ci"][1] for p in points}
        st.line_chart(chart)


def online_page(api: ApiClient) -> None:
    """Online WTR per model version or variant, and offline vs online per model version."""
    st.title("Online")
    window = st.selectbox("Attribution window", WINDOWS, key="online-window")
    data = api.online(window)
    rows = data.get("variants", {})
    if not rows:
        st.info("No served lists yet: stream the service's request log (movierec stream consume).")
        drift_section(data.get("drift"))
        return
    st.dataframe(
        [
            {
                "served by": name,
                "lists": v["lists"],
                "WTR": round(v["wtr"], 4),
                "95% CI": _ci(v),
                "mean hit position": v["mean_hit_position"],
            }
            for name, v in rows.items()
        ],
        key="online-table",
    )
    pairs = data.get("offline_vs_online") or []
    if pairs:
        st.subheader("Offline NDCG@10 vs online WTR per model version")
        st.dataframe(pairs, key="online-vs-offline")
    drift_section(data.get("drift"))


def drift_section(drift: dict[str, Any] | None) -> None:
    """The latest retraining's drift report: level, indicators, rating distributions."""
    st.subheader("Drift before the latest retraining")
    if not drift:
        st.info("No drift report yet: the scheduler (or `movierec train --drift-gate`) writes one.")
        return
    st.markdown(f"**Level:** {drift['level']}")
    vals = drift.get("values") or {}
    if vals:
        st.bar_chart({k: [v] for k, v in vals.items() if k != "gini_change"})
    ref, cur = drift.get("reference") or {}, drift.get("current") or {}
    if ref and cur:
        stars = [f"{0.5 * (i + 1):g}" for i in range(10)]
        st.bar_chart(
            {"rating": stars, "reference": ref["rating_share"], "current": cur["rating_share"]},
            x="rating",
        )
