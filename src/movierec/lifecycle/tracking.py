"""MLflow tracking and registry: runs, the pyfunc model, champion/challenger aliases.

The embedded default is a sqlite backend under ``MOVIEREC_HOME`` with artifacts beside it;
``MOVIEREC_MLFLOW_URI`` points to a tracking server instead. Every training run logs params
(the full model config), metrics (every metric of the protocol), tags (data fingerprint,
config hash, git commit, protocol, dataset) and artifacts (the evaluation JSON and plot, and
the bundle inside a pyfunc model). The model is registered under
``MOVIEREC_REGISTERED_MODEL`` with the aliases ``champion`` and ``challenger``; the history of
champions is kept as a registered-model tag so ``rollback`` can bring the previous one back.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from movierec.errors import MovierecError
from movierec.redact import redact
from movierec.settings import Settings

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "movierec.champion_history"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")


class RegistryError(MovierecError):
    """A registry operation cannot be done (unknown version, nothing to roll back to...)."""


def metric_key(name: str) -> str:
    """MLflow-safe metric name: ``recall@10`` -> ``recall_at_10``."""
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", name.replace("@", "_at_"))


def flatten(prefix: str, value: Any) -> dict[str, str]:
    """Nested config -> flat ``a.b.c`` params (MLflow params are strings)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out |= flatten(f"{prefix}.{k}" if prefix else str(k), v)
        return out
    return {prefix: json.dumps(value) if not isinstance(value, str) else value}


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version, as the CLI and the service show it."""

    version: str
    run_id: str
    bundle: str
    aliases: tuple[str, ...]
    metric: str
    value: float | None
    protocol: str
    fingerprint: str
    created: int


#: Tracking databases this process has reached (probed once each).
_REACHED: set[str] = set()


def probe_database(uri: str, timeout_s: int = 5) -> None:
    """Fail at once when a PostgreSQL or MySQL tracking database refuses connections.

    MLflow retries a refused connection ten times with doubling pauses (about 100 s) while it
    holds a process-wide lock, so every other MLflow call of the process waits with it.

    Raises:
        RegistryError: The database did not accept a connection within ``timeout_s``.
    """
    if uri in _REACHED or not uri.startswith(("postgresql", "mysql")):
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    # libpq (psycopg, psycopg2), PyMySQL and mysqlclient take connect_timeout; other drivers
    # get their own default
    known = uri.startswith(("postgresql", "mysql+pymysql", "mysql+mysqldb", "mysql:"))
    args = {"connect_timeout": timeout_s} if known else {}
    engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args=args)
    try:
        with engine.connect():
            pass
    except Exception as e:
        raise RegistryError(
            f"the tracking database {redact(uri)} does not accept connections "
            f"({type(e).__name__}); check MOVIEREC_MLFLOW_URI"
        ) from None
    finally:
        engine.dispose()
    _REACHED.add(uri)


class Tracker:
    """Thin, typed layer over ``MlflowClient`` for one experiment and one registered model."""

    def __init__(self, settings: Settings) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from mlflow import MlflowClient

        self.settings = settings
        self.uri = (
            settings.reveal(settings.mlflow_uri) or f"sqlite:///{settings.mlflow_db.resolve()}"
        )
        settings.home.mkdir(parents=True, exist_ok=True)
        probe_database(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.model_name = settings.registered_model
        self.experiment_id = self._experiment(settings)

    def _experiment(self, settings: Settings) -> str:
        """The experiment's id, created when missing (by whichever process gets there first)."""
        from mlflow.exceptions import MlflowException

        name = settings.mlflow_experiment
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        # a tracking server keeps its own artifacts; any other backend keeps them under home
        served = self.uri.startswith(("http://", "https://"))
        location = None if served else (settings.home / "mlartifacts").resolve().as_uri()
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except MlflowException as e:  # another trainer created it since (the stack's scheduler)
            exp = self.client.get_experiment_by_name(name)
            if e.error_code != "RESOURCE_ALREADY_EXISTS" or exp is None:
                raise
            return str(exp.experiment_id)

    # -------------------------------------------------------------------- runs
    def start_run(self, name: str, tags: dict[str, str]) -> str:
        """Create a run; return its id."""
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={k: redact(v) for k, v in tags.items()}
        )
        return str(run.info.run_id)

    def log(
        self,
        run_id: str,
        *,
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> None:
        """Log params (flattened), numeric metrics (MLflow-safe names) and tags."""
        from mlflow.entities import Metric, Param, RunTag

        ts = int(time.time() * 1000)
        ps = [Param(k, redact(v)[:6000]) for k, v in flatten("", params or {}).items()]
        ms = [
            Metric(metric_key(k), float(v), ts, 0)
            for k, v in (metrics or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        tg = [RunTag(k, redact(str(v))) for k, v in (tags or {}).items()]
        for start in range(0, max(len(ps), len(ms), len(tg), 1), 100):
            self.client.log_batch(
                run_id,
                metrics=ms[start : start + 100],
                params=ps[start : start + 100],
                tags=tg[start : start + 100],
            )

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """Upload one file or folder to the run's artifacts."""
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def end_run(self, run_id: str, ok: bool) -> None:
        """Mark the run FINISHED or FAILED."""
        self.client.set_terminated(run_id, "FINISHED" if ok else "FAILED")

    def run_metric(self, run_id: str, metric: str) -> float | None:
        """A metric of a run (by its movierec name), or None."""
        value = self.client.get_run(run_id).data.metrics.get(metric_key(metric))
        return None if value is None else float(value)

    def log_tuning(self, result: dict[str, Any]) -> str:
        """A tuning search as one parent run with a child run per trial; return the parent id."""
        base = {
            "dataset": str(result.get("dataset", "")),
            "protocol": str(result["protocol"]),
            "stage": "valid",
            "model": str(result["model"]),
            "metric": str(result["metric"]),
        }
        parent = self.start_run(f"tune-{result['model']}", base | {"kind": "tune"})
        for i, trial in enumerate(result["trials"]):
            child = self.start_run(
                f"trial-{i}", base | {"kind": "trial", "mlflow.parentRunId": parent}
            )
            self.log(
                child,
                params={"trial": i, "config": trial["params"]},
                metrics={result["metric"]: trial["value"]},
            )
            self.end_run(child, True)
        self.log(
            parent,
            params={"trials": len(result["trials"]), "best": result["best"]["params"]},
            metrics={f"best_{result['metric']}": result["best"]["value"]},
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tuning.json"
            path.write_text(json.dumps(result, indent=2))
            self.log_artifact(parent, path)
        self.end_run(parent, True)
        return parent

    def log_report(self, report: dict[str, Any], plot: Path | None = None) -> str:
        """A model report as one run: per-model metrics prefixed by the model, JSON and plot."""
        run = self.start_run(
            "report",
            {
                "kind": "report",
                "dataset": str(report.get("dataset", "")),
                "protocol": str(report["protocol"]),
            },
        )
        self.log(
            run,
            params={"models": ",".join(report["models"]), "seed": report.get("seed", 0)},
            metrics={
                f"{name}.{key}": value
                for name, vals in report["models"].items()
                for key, value in vals.items()
                if not key.startswith(("cold:", "warm:", "heavy:"))
            },
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.json"
            path.write_text(json.dumps(report, indent=2))
            self.log_artifact(run, path, "report")
        if plot is not None and plot.exists():
            self.log_artifact(run, plot, "report")
        self.end_run(run, True)
        return run

    # ---------------------------------------------------------------- registry
    def register(self, run_id: str, bundle_dir: Path, tags: dict[str, str]) -> str:
        """Log the bundle as a pyfunc model in the run and register a new version."""
        import mlflow.pyfunc

        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "model"
            mlflow.pyfunc.save_model(
                path=str(model_dir),
                python_model=str(PYFUNC_CODE),
                artifacts={"bundle": str(bundle_dir)},
                pip_requirements=["movierec"],
                signature=_signature(),
            )
            self.client.log_artifacts(run_id, str(model_dir), "model")
        try:
            self.client.get_registered_model(self.model_name)
        except Exception:
            self.client.create_registered_model(self.model_name)
        source = f"{self.client.get_run(run_id).info.artifact_uri}/model"
        mv = self.client.create_model_version(self.model_name, source, run_id=run_id, tags=tags)
        return str(mv.version)

    def alias_version(self, alias: str) -> str | None:
        """The version an alias points to, or None."""
        try:
            return str(self.client.get_model_version_by_alias(self.model_name, alias).version)
        except Exception:
            return None

    def version_tags(self, version: str) -> dict[str, str]:
        """Tags of a model version."""
        mv = self.client.get_model_version(self.model_name, version)
        return dict(mv.tags)

    def set_alias(self, alias: str, version: str) -> None:
        """Point an alias at a version."""
        self.client.set_registered_model_alias(self.model_name, alias, version)

    def history(self) -> list[str]:
        """Champion versions, oldest first (the last is the current champion)."""
        try:
            tags = self.client.get_registered_model(self.model_name).tags
        except Exception:
            return []
        return list(json.loads(tags.get(HISTORY_TAG, "[]")))

    def crown(self, version: str) -> None:
        """Make a version the champion and record it in the champion history."""
        hist = [v for v in self.history() if v != version] + [version]
        self.set_alias(CHAMPION, version)
        self.client.set_registered_model_tag(self.model_name, HISTORY_TAG, json.dumps(hist))

    def uncrown(self) -> str:
        """Drop the current champion from the history; the previous one becomes champion."""
        hist = self.history()
        if len(hist) < 2:
            raise RegistryError("no previous champion to roll back to")
        hist.pop()
        self.set_alias(CHAMPION, hist[-1])
        self.client.set_registered_model_tag(self.model_name, HISTORY_TAG, json.dumps(hist))
        return hist[-1]

    def versions(self) -> list[VersionInfo]:
        """Every registered version, newest first."""
        try:
            found = self.client.search_model_versions(f"name = '{self.model_name}'")
            registered = self.client.get_registered_model(self.model_name)
        except Exception:  # no model registered yet
            return []
        aliases: dict[str, list[str]] = {}
        for alias, v in registered.aliases.items():
            aliases.setdefault(str(v), []).append(alias)
        out = []
        for mv in found:
            tags = dict(mv.tags)
            value = tags.get("metric_value")
            out.append(
                VersionInfo(
                    version=str(mv.version),
                    run_id=str(mv.run_id),
                    bundle=tags.get("bundle_version", ""),
                    aliases=tuple(sorted(aliases.get(str(mv.version), []))),
                    metric=tags.get("metric", ""),
                    value=float(value) if value not in (None, "") else None,
                    protocol=tags.get("protocol", ""),
                    fingerprint=tags.get("data_fingerprint", ""),
                    created=int(mv.creation_timestamp or 0),
                )
            )
        return sorted(out, key=lambda v: -int(v.version))

    def download_bundle(self, version: str, dest: Path) -> Path:
        """Fetch a version's bundle from the registry into ``dest`` (for pruned bundles)."""
        import mlflow.artifacts

        mv = self.client.get_model_version(self.model_name, version)
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{mv.source}/artifacts/bundle", dst_path=tmp, tracking_uri=self.uri
            )
            target = dest / self.version_tags(version)["bundle_version"]
            if not target.exists():
                shutil.move(local, target)
        return target


def _signature() -> Any:
    """Input: ``user_id`` (and optional ``k``, ``strategy``); output: one row per movie."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return ModelSignature(
        inputs=Schema(
            [
                ColSpec("long", "user_id"),
                ColSpec("long", "k", required=False),
                ColSpec("string", "strategy", required=False),
            ]
        ),
        outputs=Schema(
            [
                ColSpec("long", "user_id"),
                ColSpec("long", "rank"),
                ColSpec("long", "movie_id"),
                ColSpec("double", "score"),
                ColSpec("string", "source"),
            ]
        ),
    )
