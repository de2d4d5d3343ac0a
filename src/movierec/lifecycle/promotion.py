"""Manual promotion and rollback: the registry's champion and the served bundle move together."""

from __future__ import annotations

import logging

from movierec.lifecycle.bundle import current_version, list_versions, load_bundle, set_current
from movierec.lifecycle.tracking import RegistryError, Tracker
from movierec.lifecycle.train import notify_service
from movierec.settings import Settings

logger = logging.getLogger(__name__)


def _serve(settings: Settings, tracker: Tracker, version: str) -> str:
    """Make a registered version's bundle CURRENT (restored from MLflow if pruned)."""
    bundle = tracker.version_tags(version).get("bundle_version")
    if not bundle:
        raise RegistryError(f"version {version} has no bundle_version tag")
    root = settings.bundles_dir
    if bundle not in list_versions(root):
        logger.info("bundle %s was pruned: restoring it from MLflow", bundle)
        tracker.download_bundle(version, root)
    load_bundle(root, bundle)  # verify before swapping
    set_current(root, bundle)
    notify_service(settings)
    return bundle


def promote(settings: Settings, version: str) -> str:
    """Make a registered version the champion and serve its bundle; return the bundle."""
    tracker = Tracker(settings)
    try:
        tracker.version_tags(version)
    except Exception:
        raise RegistryError(f"no version {version} of model {tracker.model_name}") from None
    bundle = _serve(settings, tracker, version)
    tracker.crown(version)
    logger.info("promoted version %s (bundle %s)", version, bundle)
    return bundle


def rollback(settings: Settings) -> tuple[str, str]:
    """Bring the previous champion back; return (its version, its bundle)."""
    tracker = Tracker(settings)
    hist = tracker.history()
    if len(hist) < 2:
        raise RegistryError("no previous champion to roll back to")
    bundle = _serve(settings, tracker, hist[-2])
    version = tracker.uncrown()
    logger.info("rolled back to version %s (bundle %s)", version, bundle)
    return version, bundle


__all__ = ["current_version", "promote", "rollback"]
