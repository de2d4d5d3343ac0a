"""Scheduled retraining and the batch folder flow.

Two jobs run on an APScheduler scheduler:

* **retrain** every ``MOVIEREC_TRAIN_INTERVAL``: :func:`train_and_publish` on
  ``MOVIEREC_TRAIN_DATASET`` (default: the store) with the feedback received so far. Never
  two at once (``max_instances=1``, and a turn is skipped while any process trains in this
  home: :func:`~movierec.lifecycle.train.one_training`); a failed run is logged and the next
  still runs.
* **batches** every few seconds: a file dropped in ``batches/landing/`` moves to
  ``incoming/``, is validated and ingested into the store, then moves to ``processed/`` (with
  its report), or to ``failed/`` with its reject report when its reject rate is above
  ``MOVIEREC_MAX_REJECT_RATE`` (nothing of it is merged) or it cannot be read. A file left in
  ``incoming/`` by a scheduler that died mid-ingest is ingested again by the next scan (the
  store's merge is idempotent by key and skips tables whose digest is recorded), so a crash
  never leaves a half-ingested file behind.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from movierec.data.ingest import ingest_file
from movierec.data.store import open_store
from movierec.errors import MovierecError, TrainingBusyError
from movierec.lifecycle.train import TrainResult, train_and_publish
from movierec.settings import Settings

logger = logging.getLogger(__name__)

FOLDERS = ("landing", "incoming", "processed", "failed")
#: A landed file is picked up once it has not changed for this long (still being written).
SETTLE_S = 1.0


@dataclass(frozen=True)
class BatchOutcome:
    """What happened to one landed file."""

    name: str
    status: Literal["processed", "failed"]
    report: Path
    detail: dict[str, Any] = field(default_factory=dict)


def batch_kind(name: str) -> str:
    """The table a batch file feeds, from its name (``ratings*.csv``, ``movies*``, ...)."""
    low = name.lower()
    for kind in ("ratings", "movies", "tags", "links", "events"):
        if low.startswith(kind):
            return kind
    if low.endswith((".log", ".jsonl")):
        return "events"
    return "ratings"


class Scheduler:
    """The retraining and batch jobs over one ``MOVIEREC_HOME``."""

    def __init__(self, settings: Settings, **train_kwargs: Any) -> None:
        self.settings = settings
        self.train_kwargs = train_kwargs
        self._train_lock = threading.Lock()
        self._batch_lock = threading.Lock()
        self.runs: list[dict[str, Any]] = []
        self.folders = {name: settings.batches_dir / name for name in FOLDERS}
        self._recovered = False
        for path in self.folders.values():
            path.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------- retraining
    def retrain(self) -> TrainResult | None:
        """One retraining run; None when one is already running or this one failed."""
        if not self._train_lock.acquire(blocking=False):
            logger.warning("retrain skipped: a run is still in progress")
            self.runs.append({"status": "skipped", "at": time.time()})
            return None
        try:
            kwargs: dict[str, Any] = {
                "wait": False,  # a CLI or API training in this home: this turn is skipped
                "dataset": self.settings.train_dataset,
                "model": self.settings.train_model,
                "drift_gate": self.settings.drift_gate,
            }
            if self.settings.train_strategies:
                kwargs["strategies"] = self.settings.train_strategies
            kwargs |= self.train_kwargs
            result = train_and_publish(self.settings, **kwargs)
            self.runs.append(
                {
                    "status": "ok",
                    "at": time.time(),
                    "version": result.version,
                    "promoted": result.promoted,
                    "reason": result.decision.get("reason"),
                }
            )
            return result
        except TrainingBusyError as e:
            logger.warning("retrain skipped: %s", e)
            self.runs.append({"status": "skipped", "at": time.time(), "reason": str(e)})
            return None
        except Exception as e:  # logged; the next scheduled run still happens
            logger.exception("retrain failed: %s", e)
            self.runs.append({"status": "failed", "at": time.time(), "error": str(e)})
            return None
        finally:
            self._train_lock.release()

    # ------------------------------------------------------------ batch flow
    def scan(self) -> list[BatchOutcome]:
        """Move settled files from landing/ through incoming/ to processed/ or failed/."""
        if not self._batch_lock.acquire(blocking=False):
            return []
        try:
            out = []
            if not self._recovered:  # left behind by a scheduler killed mid-ingest
                for f in sorted(self.folders["incoming"].iterdir()):
                    if f.is_file() and not f.name.startswith("."):
                        logger.warning("batch %s: resuming an interrupted ingest", f.name)
                        out.append(self._ingest(f, f.name.split("-", 1)[-1]))
                self._recovered = True
            now = time.time()
            for f in sorted(self.folders["landing"].iterdir()):
                if not f.is_file() or f.name.startswith("."):
                    continue
                if now - f.stat().st_mtime < SETTLE_S:
                    continue
                out.append(self._process(f))
            return out
        finally:
            self._batch_lock.release()

    def _process(self, landed: Path) -> BatchOutcome:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        incoming = self.folders["incoming"] / f"{stamp}-{landed.name}"
        landed.rename(incoming)  # same filesystem: atomic
        return self._ingest(incoming, landed.name)

    def _ingest(self, incoming: Path, name: str) -> BatchOutcome:
        kind = batch_kind(name)
        report: dict[str, Any] = {"file": name, "kind": kind}
        try:
            summary = ingest_file(
                open_store(self.settings),
                incoming,
                kind,  # type: ignore[arg-type]
                chunk_bytes=self.settings.chunk_bytes,
                dedup=self.settings.dedup_keep,
                max_reject_rate=self.settings.max_reject_rate,
                memory_limit=self.settings.memory_limit,
            )
            report |= summary.to_dict(self.settings.max_rejects_in_report)
            status: Literal["processed", "failed"] = "processed"
        except MovierecError as e:
            report |= {"error": str(e)}
            rep = getattr(e, "report", None)
            if rep is not None:
                rejects = self.folders["failed"] / f"{incoming.name}.rejects.jsonl"
                rep.write_rejects(rejects)
                report["report"] = rep.to_dict(self.settings.max_rejects_in_report)
            status = "failed"
        except Exception as e:  # unreadable or unexpected: the file is kept, never lost
            logger.exception("batch %s failed", name)
            report |= {"error": f"{type(e).__name__}: {e}"}
            status = "failed"
        dest = self.folders[status] / incoming.name
        shutil.move(str(incoming), dest)
        report_path = dest.with_name(dest.name + ".report.json")
        report_path.write_text(json.dumps(report, indent=2, default=str))
        logger.info("batch %s -> %s", name, status)
        return BatchOutcome(name, status, report_path, report)

    # ---------------------------------------------------------------- running
    def build(self, blocking: bool = True, scan_every_s: float = 5.0) -> Any:
        """An APScheduler scheduler with both jobs (not started)."""
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.schedulers.blocking import BlockingScheduler

        sched = BlockingScheduler() if blocking else BackgroundScheduler()
        sched.add_job(
            self.retrain,
            "interval",
            seconds=self.settings.train_interval_s,
            id="retrain",
            max_instances=1,
            coalesce=True,
        )
        sched.add_job(self.scan, "interval", seconds=scan_every_s, id="batches", max_instances=1)
        return sched
