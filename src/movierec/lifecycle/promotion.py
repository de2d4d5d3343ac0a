"""The one promotion path: one rule decides, one function crowns and serves.

``train_and_publish`` (after every training run) and ``movierec model promote`` / ``rollback``
(by hand) all go through :func:`decide` and :func:`crown` / :func:`serve_version`: the
registry's champion alias and the served ``CURRENT`` bundle always move together.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from movierec.evaluation.metrics import lower_is_better
from movierec.lifecycle.bundle import (
    current_version,
    list_versions,
    load_bundle,
    prune,
    set_current,
)
from movierec.lifecycle.tracking import CHAMPION, RegistryError, Tracker
from movierec.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionRule:
    """A challenger replaces the champion when ``metric`` is better by ``min_improve``.

    Both are compared on the same ``protocol`` and the same data.
    """

    metric: str
    min_improve: float
    protocol: str

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        metric: str | None = None,
        min_improve: float | None = None,
        protocol: str | None = None,
    ) -> PromotionRule:
        """The rule of ``MOVIEREC_PROMOTE_METRIC``, ``MIN_IMPROVE`` and ``TRAIN_PROTOCOL``."""
        return cls(
            metric or settings.promote_metric,
            settings.min_improve if min_improve is None else min_improve,
            protocol or settings.train_protocol,
        )

    def better(self, challenger: float, champion: float) -> bool:
        """Whether ``challenger`` beats ``champion`` by ``min_improve`` (ties pass at 0)."""
        eps = 1e-12
        if lower_is_better(self.metric):
            return challenger <= champion - self.min_improve + eps
        return challenger >= champion + self.min_improve - eps


@dataclass(frozen=True)
class Challenger:
    """A registered version waiting for the decision, and what identifies its evaluation."""

    version: str
    model: str
    config_hash: str
    value: float | None
    fingerprint: str


#: ``(model, its config overrides) -> its metric on this run's data under the rule's protocol``.
EvaluateFn = Callable[[str, dict[str, Any]], float]


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`decide`, logged on the run."""

    promoted: bool
    reason: str
    metric: str
    protocol: str
    min_improve: float
    challenger: str
    champion: str | None
    challenger_value: float | None
    champion_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return asdict(self)


def decide(
    tracker: Tracker, rule: PromotionRule, challenger: Challenger, evaluate: EvaluateFn
) -> Decision:
    """Apply ``rule`` to a registered challenger.

    The champion's number is its own evaluation when that was on the same protocol and data,
    the challenger's when both have the same configuration (a refresh), else the champion's
    configuration re-evaluated by ``evaluate``.
    """
    champion = tracker.alias_version(CHAMPION)
    value = challenger.value

    def result(promoted: bool, reason: str, champ: float | None = None) -> Decision:
        return Decision(
            promoted,
            reason,
            rule.metric,
            rule.protocol,
            rule.min_improve,
            challenger.version,
            champion,
            value,
            champ,
        )

    if champion is None:
        return result(True, "first model: no champion yet")
    if value is None:
        return result(True, "not evaluated: promoted by request")
    tags = tracker.version_tags(champion)
    if (
        tags.get("protocol") == rule.protocol
        and tags.get("data_fingerprint") == challenger.fingerprint
        and tags.get("metric_value")
        and tags.get("metric") == rule.metric
    ):
        champ = float(tags["metric_value"])
        how = "champion's own evaluation (same protocol and data)"
    elif (
        tags.get("config_hash") == challenger.config_hash and tags.get("model") == challenger.model
    ):
        champ = float(value)
        how = "same configuration as the champion: equal on the same data (a refresh)"
    else:
        champ_model = tags.get("model", challenger.model)
        champ = evaluate(champ_model, json.loads(tags.get("params_json", "{}")))
        how = "champion's configuration re-evaluated on this data and protocol"
    better = rule.better(float(value), champ)
    reason = (
        f"{rule.metric} {float(value):.4f} vs champion v{champion} {champ:.4f} "
        f"({how}); min_improve {rule.min_improve}: {'promoted' if better else 'kept champion'}"
    )
    return result(better, reason, champ)


def serve_version(settings: Settings, tracker: Tracker, version: str, verify: bool = True) -> str:
    """Make a registered version's bundle ``CURRENT`` (restored from MLflow if pruned).

    The bundle is verified first (unless it was just published by this process), older
    bundles are pruned (never the new or the previous one) and the service is told.
    """
    bundle = tracker.version_tags(version).get("bundle_version")
    if not bundle:
        raise RegistryError(f"version {version} has no bundle_version tag")
    root = settings.bundles_dir
    if bundle not in list_versions(root):
        logger.info("bundle %s was pruned: restoring it from MLflow", bundle)
        tracker.download_bundle(version, root)
    if verify:
        load_bundle(root, bundle)
    previous = current_version(root)
    set_current(root, bundle)
    prune(root, settings.bundle_retention, keep={bundle} | ({previous} if previous else set()))
    notify_service(settings)
    return bundle


def crown(settings: Settings, tracker: Tracker, version: str, verify: bool = True) -> str:
    """Serve a registered version and make it the champion; return its bundle."""
    bundle = serve_version(settings, tracker, version, verify)
    tracker.crown(version)
    logger.info("champion: version %s (bundle %s)", version, bundle)
    return bundle


def promote(settings: Settings, version: str) -> str:
    """Make a registered version the champion by hand and serve its bundle; return the bundle."""
    tracker = Tracker(settings)
    try:
        tracker.version_tags(version)
    except Exception:
        raise RegistryError(f"no version {version} of model {tracker.model_name}") from None
    return crown(settings, tracker, version)


def rollback(settings: Settings) -> tuple[str, str]:
    """Bring the previous champion back; return (its version, its bundle)."""
    tracker = Tracker(settings)
    hist = tracker.history()
    if len(hist) < 2:
        raise RegistryError("no previous champion to roll back to")
    bundle = serve_version(settings, tracker, hist[-2])
    version = tracker.uncrown()
    logger.info("rolled back to version %s (bundle %s)", version, bundle)
    return version, bundle


def notify_service(settings: Settings) -> bool:
    """Ask a running service to reload now (it also polls CURRENT); False when unreachable."""
    if not settings.service_url:
        return False
    token = settings.reveal(settings.admin_token)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.post(
            f"{settings.service_url.rstrip('/')}/admin/reload-model", headers=headers, timeout=60
        )
        return r.status_code < 300
    except httpx.HTTPError as e:
        logger.warning("service at %s not told about the new model: %s", settings.service_url, e)
        return False
