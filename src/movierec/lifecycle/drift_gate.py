"""Drift before a retrain: the data newer than the served bundle's against the older data."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from movierec.data.drift import Thresholds, compare
from movierec.lifecycle.bundle import current_version, read_manifest
from movierec.lifecycle.tracking import Tracker
from movierec.settings import Settings

logger = logging.getLogger(__name__)


def thresholds(settings: Settings) -> Thresholds:
    """The drift thresholds in settings."""
    return Thresholds(
        settings.drift_psi_moderate,
        settings.drift_psi_strong,
        settings.drift_ks_moderate,
        settings.drift_ks_strong,
    )


def drift_since_serving(settings: Settings, ratings: pa.Table) -> dict[str, Any] | None:
    """Drift of the interactions after the served bundle's newest one against those before.

    Returns ``None`` when nothing is served, the bundle does not record its data's end, or
    fewer than ``MOVIEREC_DRIFT_MIN_ROWS`` interactions are newer (too few to judge).
    """
    version = current_version(settings.bundles_dir)
    if version is None:
        return None
    try:
        manifest = read_manifest(settings.bundles_dir, version)
    except Exception as e:
        logger.warning("drift gate off: the served bundle cannot be read (%s)", e)
        return None
    end = manifest.get("data_max_timestamp")
    if end is None:
        return None
    ts = ratings["timestamp"]
    ref = ratings.filter(pc.less_equal(ts, int(end)))
    cur = ratings.filter(pc.greater(ts, int(end)))
    if cur.num_rows < settings.drift_min_rows or ref.num_rows == 0:
        logger.info(
            "drift gate: %d new interactions (< %d): not judged",
            cur.num_rows,
            settings.drift_min_rows,
        )
        return None
    report = compare(ref, cur, thresholds(settings))
    report["reference_until"] = int(end)
    logger.info("drift since the served data: %s (%s)", report["level"], drift_words(report))
    return report


def drift_words(report: dict[str, Any]) -> str:
    """``rating PSI 0.31, activity KS 0.12`` for messages."""
    v = report.get("values") or {}
    return f"rating PSI {v.get('rating_psi', 0):.3f}, activity KS {v.get('activity_ks', 0):.3f}"


def log_json(tracker: Tracker, run_id: str, payload: dict[str, Any], name: str) -> None:
    """Attach a JSON document to a run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(payload, indent=2))
        tracker.log_artifact(run_id, path)


def latest_drift_path(settings: Settings) -> Path:
    """Where the latest retraining's drift report is kept (for the web app and /online)."""
    return settings.logs_dir / "drift-latest.json"


def save_latest_drift(settings: Settings, report: dict[str, Any]) -> None:
    """Keep the drift report of the latest retraining (written whole, then renamed)."""
    path = latest_drift_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
