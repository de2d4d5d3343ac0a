"""Online evaluation and the experiment in force, for the web app and dashboards (read-only)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from movierec.experiments.online import ab_report, online_from_store
from movierec.lifecycle.bundle import read_manifest
from movierec.lifecycle.drift_gate import latest_drift_path
from movierec.service.deps import StateDep
from movierec.settings import parse_interval

router = APIRouter(tags=["experiments"])
Window = Annotated[
    str, Query(max_length=16, description="Attribution window: seconds or 30m / 1h / 1d.")
]


def _window(text: str) -> float:
    try:
        return parse_interval(text)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None


@router.get("/online")
def online(state: StateDep, window: Window = "1h") -> dict[str, Any]:
    """WTR per model version or variant (95% intervals, over time), beside offline metrics.

    Also the drift report of the latest retraining that checked drift (``drift``, or null).

    A served list's key is its variant (``experiment/variant``) or, outside experiments, the
    model version that served it; versions still on disk show their offline metrics.
    """
    out = online_from_store(state.feedback, _window(window))
    rows = []
    for key, vals in out["variants"].items():
        try:
            metrics = read_manifest(state.settings.bundles_dir, key).get("metrics", {})
        except Exception:  # not a bundle version (a variant, a server name), or pruned
            continue
        rows.append(
            {
                "version": key,
                "offline_ndcg@10": metrics.get("ndcg@10"),
                "online_wtr": vals["wtr"],
                "online_ci": vals["ci"],
                "lists": vals["lists"],
            }
        )
    for vals in out["variants"].values():
        vals.pop("user_wtr", None)
    drift_file = latest_drift_path(state.settings)
    drift = json.loads(drift_file.read_text()) if drift_file.exists() else None
    return out | {"offline_vs_online": rows, "drift": drift}


@router.get("/experiments")
def experiments(state: StateDep, window: Window = "1h") -> dict[str, Any]:
    """The experiment in force (or the file's error), its A/B report and interleaving result."""
    exp = state.experiments.current()
    if exp is None:
        return {"experiment": None, "error": state.experiments.error}
    out = online_from_store(state.feedback, _window(window))
    report = ab_report(out, exp)
    series = {
        k.split("/", 1)[1]: v for k, v in out["over_time"].items() if k.startswith(f"{exp.name}/")
    }
    return {
        "experiment": exp.to_dict(),
        "error": state.experiments.error,
        "report": report,
        "over_time": series,
        "interleaving": out["interleaving"].get(exp.name),
    }
