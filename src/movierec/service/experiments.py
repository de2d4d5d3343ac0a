"""Serving an experiment: the user's variant, two bundle versions at once, interleaved lists.

The experiments file is re-read when it changes (checked at most once a second), so a weight
set to 0 by ``movierec ab watch`` takes effect without a restart; a file that does not parse
leaves the previous experiment in force and is reported on ``/ready``. A variant that names a
bundle version other than the served one is answered by a second engine for that version
(loaded once, verified like any bundle), so a challenger is tested beside the champion.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from movierec.data.user_feedback import UserFeedback
from movierec.experiments.design import Experiment, Variant, read_experiment
from movierec.experiments.interleave import team_draft
from movierec.lifecycle.bundle import load_bundle
from movierec.service.engine import Engine
from movierec.service.render import out as _out
from movierec.service.schemas import RecommendationOut
from movierec.settings import Settings

logger = logging.getLogger(__name__)


class ExperimentWatch:
    """The experiment in force, re-read when its file changes."""

    def __init__(self, path: Path, every_s: float = 1.0) -> None:
        self.path = path
        self.every_s = every_s
        self.error: str | None = None
        self._exp: Experiment | None = None
        self._mtime: float | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def current(self) -> Experiment | None:
        """The experiment (``None`` when there is no file)."""
        now = time.monotonic()
        if now - self._checked < self.every_s:
            return self._exp
        with self._lock:
            self._checked = now
            try:
                mtime = self.path.stat().st_mtime
            except OSError:
                self._exp, self._mtime, self.error = None, None, None
                return None
            if mtime != self._mtime:
                try:
                    self._exp, self.error = read_experiment(self.path), None
                    logger.info("experiment %s in force", self._exp.name if self._exp else None)
                except ValueError as e:  # keep what was in force
                    self.error = str(e)
                    logger.error("experiments file not applied: %s", e)
                self._mtime = mtime
        return self._exp


class VersionEngines:
    """Engines of bundle versions other than the served one (at most ``keep``)."""

    def __init__(self, settings: Settings, keep: int = 2) -> None:
        self.settings = settings
        self.keep = keep
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def get(self, version: str) -> Engine:
        """The engine of ``version`` (loaded and verified on first use)."""
        with self._lock:
            eng = self._engines.get(version)
            if eng is None:
                s = self.settings
                eng = Engine(
                    load_bundle(s.bundles_dir, version),
                    tuple(s.fallback_chain),
                    s.answer_cache_bytes // 4,
                    s.cache_feedback_answers,
                    s.scoring_threads,
                )
                if len(self._engines) >= self.keep:
                    self._engines.pop(next(iter(self._engines))).release()
                self._engines[version] = eng
            return eng


def _engine_for(v: Variant, engine: Engine, others: VersionEngines) -> Engine:
    return engine if v.version in (None, engine.version) else others.get(str(v.version))


def experiment_answer(
    exp: Experiment,
    engine: Engine,
    others: VersionEngines,
    fb: UserFeedback | None,
    user_id: int,
    k: int,
) -> tuple[RecommendationOut, str]:
    """The answer of the user's variant (or the interleaved list) and its ``X-Variant`` label."""

    def answer(v: Variant) -> RecommendationOut:
        eng = _engine_for(v, engine, others)
        ans = eng.recommend(user_id, k, v.strategy or eng.bundle.default_strategy, feedback=fb)
        return _out(eng, ans, False)

    if exp.kind == "interleave":
        a, b = (answer(v) for v in exp.variants)
        by_id = {i.movie_id: i for i in (*b.items, *a.items)}
        items, teams = team_draft(
            [i.movie_id for i in a.items],
            [i.movie_id for i in b.items],
            k,
            f"{exp.salt}:{user_id}:{time.time_ns()}",
        )
        merged = a.model_copy(
            update={
                "items": [by_id[m] for m in items],
                "strategy": "interleaved",
                "source": f"{a.source}+{b.source}",
            }
        )
        return merged, f"{exp.name}/interleaved/{teams}"
    v = exp.assign(user_id)
    return answer(v), f"{exp.name}/{v.name}"
