"""Process state of the service: the engine behind one atomically swapped reference."""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from movierec.data.feedback import FeedbackStore
from movierec.data.user_feedback import UserFeedback
from movierec.lifecycle.bundle import (
    BundleError,
    current_version,
    load_bundle,
    newest_verified,
    set_current,
)
from movierec.service.engine import CACHE_N, FEEDBACK_KEY, Engine
from movierec.service.experiments import ExperimentWatch, VersionEngines
from movierec.service.jobs import TrainingJobs
from movierec.service.limits import WorkLimiter
from movierec.service.metrics import (
    BUNDLE_FALLBACKS,
    FEEDBACK_REFRESHED,
    ONLINE_LISTS,
    ONLINE_WTR,
)
from movierec.service.request_log import RequestLog
from movierec.service.shared_cache import SharedAnswers
from movierec.settings import Settings

logger = logging.getLogger(__name__)


def attach_ann(engine: Engine, settings: Settings) -> None:
    """Build an approximate index for each factor model of a large catalog, then attach it.

    Until it is attached (and when building fails) the model answers exactly.
    """
    from movierec.models.ann import AnnIndex
    from movierec.models.factor import FactorModel

    for name, model in engine.bundle.models.items():
        if not isinstance(model, FactorModel) or model.n_items < settings.ann_min_items:
            continue
        try:
            model.use_ann(
                AnnIndex(model.item_vectors(), "hnsw" if settings.ann == "hnsw" else "ivf")
            )
            logger.info("%s answers from a %s index", name, settings.ann)
        except Exception:  # exact search keeps answering
            logger.exception("could not build the %s index of %s", settings.ann, name)


def keep_out_of_collections(first: bool) -> None:
    """After the first load, keep what exists out of the garbage collector's full collections.

    A full collection walks every tracked object while holding the interpreter lock (0.12 s
    over the 198k objects of ml-latest-small's engine: a pause for every request in flight,
    /health included). What exists after the first load (modules, bundle, catalog, indexes)
    lives as long as the process or the bundle, so it is frozen (a constant-time move, no
    collection first: what little garbage start-up leaves waits for the next unfreeze). A
    reload unfreezes it all, so the replaced engine's reference cycles are collected as
    usual.
    """
    gc.unfreeze()
    if first:
        gc.freeze()


def compile_rankers(engine: Engine, settings: Settings) -> None:
    """Compile the learned rankers of a bundle to native code; LightGBM answers until then."""
    from movierec.ranking.ranker import RankedRecommender

    for name, model in engine.bundle.models.items():
        if not isinstance(model, RankedRecommender):
            continue
        try:
            model.compile_ranker(settings.home / "cache" / "ranker")
        except Exception:  # LightGBM keeps answering
            logger.exception("could not compile the ranker of %s", name)


@dataclass
class ServiceState:
    """What every request reads: settings, the current engine (or None), feedback."""

    settings: Settings
    feedback: FeedbackStore
    engine: Engine | None = None
    started: float = field(default_factory=time.time)
    reload_lock: threading.RLock = field(default_factory=threading.RLock)
    last_error: str | None = None
    work: WorkLimiter = field(init=False)
    #: ``POST /recommend/batch``: few at once (each is many users' answers in memory).
    batches: WorkLimiter = field(init=False)
    #: Whether the background warm of the current engine is still running.
    warming: bool = False
    #: Whether the current engine's rankers are still being compiled (LightGBM answers).
    compiling: bool = False
    jobs: TrainingJobs = field(init=False)
    experiments: ExperimentWatch = field(init=False)
    versions: VersionEngines = field(init=False)
    shared: SharedAnswers | None = field(init=False, default=None)
    request_log: RequestLog | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.work = WorkLimiter(self.settings.work_slots, self.settings.work_queue)
        self.batches = WorkLimiter(self.settings.batch_slots, self.settings.work_queue)
        self.jobs = TrainingJobs(self.settings.home)
        self.experiments = ExperimentWatch(self.settings.experiments_path)
        self.versions = VersionEngines(self.settings)
        url = self.settings.reveal(self.settings.redis_url)
        self.shared = SharedAnswers(url, self.settings.redis_ttl_s) if url else None
        topic = self.settings.request_log_topic
        self.request_log = RequestLog(self.settings.kafka_bootstrap, topic) if topic else None

    def load(self, version: str | None = None) -> Engine:
        """Load and verify a bundle fully, then swap the reference (one assignment).

        Nothing is computed per user here: answers are computed on demand into the bounded
        cache, and (``MOVIEREC_WARM_CACHE``) a background thread warms the most active users
        afterwards, so readiness and start-up time do not grow with the number of users.

        Raises:
            BundleError: The bundle is missing or corrupt; the current engine keeps serving.
        """
        with self.reload_lock:
            bundle = load_bundle(self.settings.bundles_dir, version)
            engine = Engine(
                bundle,
                tuple(self.settings.fallback_chain),
                self.settings.answer_cache_bytes,
                self.settings.cache_feedback_answers,
                self.settings.scoring_threads,
            )
            engine.shared = self.shared
            engine.fold_in.quiet = self.work.alone  # a lone request's row: on the loop
            engine.batcher.spare = self.settings.spare_core
            old, self.engine = self.engine, engine  # the swap: readers see old or new, not a mix
            if old is not None:
                old.release()
            self.last_error = None
            keep_out_of_collections(first=old is None)
        if self.settings.ann != "exact":
            threading.Thread(
                target=attach_ann, args=(engine, self.settings), name="movierec-ann", daemon=True
            ).start()
        if self.settings.ranker_compile:
            self.compiling = True
            threading.Thread(
                target=self._compile, args=(engine,), name="movierec-compile", daemon=True
            ).start()
        if self.settings.warm_cache:
            self.warming = True
            threading.Thread(
                target=self._warm, args=(engine,), name="movierec-warm", daemon=True
            ).start()
        return engine

    def _compile(self, engine: Engine) -> None:
        try:
            compile_rankers(engine, self.settings)
        finally:
            if self.engine is engine:
                self.compiling = False

    def _warm(self, engine: Engine) -> None:
        """Warm the most active users' top-N until done, replaced, or half the cache is used."""
        t0 = time.perf_counter()
        users = engine.most_active(self.settings.warm_users)
        half = engine.cache.max_bytes // 2

        def stop() -> bool:
            return self.engine is not engine or engine.cache.bytes > half

        names = [engine.bundle.default_strategy] + [
            s
            for s in self.settings.warm_strategies
            if s in engine.bundle.models and s != engine.bundle.default_strategy
        ]
        try:
            for name in names:
                n = engine.warm(name, users, stop=stop)
                logger.info("warmed %d users of %s in %.2f s", n, name, time.perf_counter() - t0)
        except Exception:  # a warm that fails costs speed, never answers
            logger.exception("background warm of %s failed", engine.version)
        finally:
            if self.engine is engine:
                self.warming = False

    def pin(self, version: str) -> Engine:
        """Serve ``version`` and make it ``CURRENT``.

        One rule: a pinned reload moves the pointer, so the poller, other workers and restarts
        all follow it.

        Raises:
            BundleError: The version does not verify; nothing changes.
        """
        with self.reload_lock:
            engine = self.load(version)
            set_current(self.settings.bundles_dir, version)
            return engine

    def plain_key(self, user_id: int, strategy: str, k: int) -> tuple[str, int, int] | None:
        """Key of a user's serialized answer when it may be served as stored bytes.

        That is a known user with no feedback since training and ``k`` within the top-N
        cache; ``None`` otherwise (the answer must be computed).
        """
        if self.feedback.user(user_id) is not None:
            return None
        key = self.answer_key(user_id, strategy, k, None)
        return None if key is None else (key[0], key[1], key[2])

    def answer_key(
        self, user_id: int, strategy: str, k: int, fb: UserFeedback | None
    ) -> tuple[Any, ...] | None:
        """Key of a user's serialized answer given their feedback ``fb`` (read by the caller).

        A known user without feedback: ``(strategy, user index, k)``, as :meth:`plain_key`
        (shared between workers). A user with feedback, known or not, when
        ``cache_feedback_answers`` is on: ``(FEEDBACK_KEY, strategy, user id, k, the feedback's
        whole state)``, this worker's only; the next event makes another key, so the next
        answer sees it. ``None`` when the answer must be computed (``k`` over the top-N).
        """
        engine = self.engine
        if engine is None or k > CACHE_N:
            return None
        if fb is None:
            idx = engine.user_index(user_id)
            return (strategy, idx, k) if idx >= 0 else None
        if not engine.cache_feedback:
            return None
        return (FEEDBACK_KEY, strategy, user_id, k, fb.state())

    def watch_current(self, every_s: float) -> threading.Event | None:
        """Poll ``CURRENT`` every ``every_s`` seconds and load a new version when it moves.

        A version that fails to load is not retried until ``CURRENT`` moves again; the old
        engine keeps serving and ``/ready`` reports the error. Returns the stop event.
        """
        if every_s <= 0:
            return None
        stop = threading.Event()
        failed: list[str] = []

        def loop() -> None:
            while not stop.wait(every_s):
                cur: str | None = None
                try:
                    with self.reload_lock:  # a pin in progress finishes first
                        cur = current_version(self.settings.bundles_dir)
                        serving = self.engine.version if self.engine is not None else None
                        if cur is None or cur == serving or cur in failed:
                            continue
                        logger.info("CURRENT moved to %s: reloading", cur)
                        self.load(cur)
                except Exception as e:  # keep serving the old model
                    failed.append(str(cur))
                    self.last_error = str(e)
                    logger.error("reload of %s failed: %s", cur, e)

        threading.Thread(target=loop, name="movierec-current-watch", daemon=True).start()
        return stop

    def watch_feedback(self, every_s: float) -> threading.Event | None:
        """Fold in events other processes stored (the stream consumer) every ``every_s`` s.

        A user with such events is answered on the per-request path from then on, exactly
        like one who used ``POST /feedback``. Returns the stop event.
        """
        if every_s <= 0:
            return None
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every_s):
                try:
                    users = self.feedback.refresh()
                except Exception as e:  # a database hiccup: try again next time
                    logger.warning("feedback refresh failed: %s", e)
                    continue
                if users:
                    FEEDBACK_REFRESHED.inc(len(users))
                    if self.engine is not None:
                        self.engine.forget_users(sorted(users))

        threading.Thread(target=loop, name="movierec-feedback-watch", daemon=True).start()
        return stop

    def watch_online(self, every_s: float) -> threading.Event | None:
        """Recompute the online WTR per model version / variant for /metrics every ``every_s``."""
        if every_s <= 0:
            return None
        from movierec.experiments.online import online_from_store
        from movierec.settings import parse_interval

        stop = threading.Event()
        window = parse_interval(self.settings.online_window)

        def loop() -> None:
            while not stop.wait(every_s):
                try:
                    out = online_from_store(self.feedback, window)
                except Exception as e:  # metrics are best effort
                    logger.warning("online metrics failed: %s", e)
                    continue
                for key, vals in out["variants"].items():
                    ONLINE_WTR.labels(key).set(vals["wtr"])
                    ONLINE_LISTS.labels(key).set(vals["lists"])

        threading.Thread(target=loop, name="movierec-online-metrics", daemon=True).start()
        return stop

    def try_load_current(self) -> None:
        """Load CURRENT at start-up; if it does not verify, the newest version that does.

        A fallback is logged as a warning and counted (``movierec_bundle_fallbacks_total``);
        ``CURRENT`` is left as it is for a person to look at. When nothing loads, the error is
        kept for /ready and the service still answers /health.
        """
        root = self.settings.bundles_dir
        cur = current_version(root)
        if cur is None:
            self.last_error = "no model published yet (run `movierec train`)"
            return
        failed = {cur}
        try:
            self.load()
            return
        except Exception as e:  # start serving health even when the model cannot load
            self.last_error = str(e)
            logger.error("could not load the current bundle: %s", e)
        while (older := newest_verified(root, failed)) is not None:
            try:
                self.load(older)
            except BundleError as e:
                failed.add(older)
                logger.error("fallback bundle %s does not load either: %s", older, e)
                continue
            BUNDLE_FALLBACKS.inc()
            logger.warning("CURRENT (%s) does not verify: serving %s instead", cur, older)
            return
