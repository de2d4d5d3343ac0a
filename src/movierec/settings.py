"""The one settings class of movierec (environment prefix ``MOVIEREC_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from movierec.redact import register_secret

GROUPLENS_MIRROR = "https://files.grouplens.org/datasets/movielens"


class Settings(BaseSettings):
    """Every knob of movierec, read from ``MOVIEREC_*`` variables or a ``.env`` file.

    All state lives under :attr:`home`: the data store, downloaded releases, model bundles,
    the MLflow database, the feedback database and logs.
    """

    model_config = SettingsConfigDict(
        env_prefix="MOVIEREC_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(default=Path(".movierec"), description="Root folder of all state.")
    data_dir: Path | None = Field(
        default=None,
        description="Folder holding MovieLens releases, one subfolder per release "
        "named as GroupLens names it (ml-latest-small/, ml-100k/, ml-1m/, ...).",
    )
    mirror: str = Field(
        default=GROUPLENS_MIRROR, description="Base URL that serves <release>.zip and .zip.md5."
    )
    offline: bool = Field(default=False, description="Never try to download a release.")
    require_checksum: bool = Field(
        default=True, description="Refuse a downloaded zip whose checksum cannot be checked."
    )
    download_timeout_s: float = Field(default=60.0, gt=0)
    database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL of a PostgreSQL / MySQL store; "
        "unset = embedded Parquet + DuckDB (a secret: never logged or served).",
    )
    dedup_keep: Literal["latest", "first"] = Field(
        default="latest",
        description="Which event wins for a repeated (user, movie): the latest by timestamp "
        "(ties: the later line) or the first seen.",
    )
    chunk_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Bytes read per validation chunk."
    )
    max_rejects_in_report: int = Field(
        default=10_000, ge=0, description="Rejects listed in a JSON report (all go to the file)."
    )
    log_level: str = Field(default="WARNING", description="Logging level of the CLI.")
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the admin endpoints: /admin/*, /model, /debug/* "
        "(unset: admin disabled).",
    )
    admin_user: str | None = Field(
        default=None,
        description="HTTP Basic user of the admin endpoints (with admin_password): an "
        "alternative to the bearer token.",
    )
    admin_password: SecretStr | None = Field(
        default=None, description="HTTP Basic password of the admin endpoints."
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="Key writing routes (POST /feedback) need in an X-API-Key header; the "
        "admin token works too. Unset: writes are open (the service warns at start-up).",
    )
    max_batch_users: int = Field(
        default=1000, ge=1, description="Most users in one POST /recommend/batch."
    )
    max_batch_items: int = Field(
        default=50_000,
        ge=1,
        description="Most users × k in one POST /recommend/batch (refused with 422 before work).",
    )
    max_response_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="Largest answer a request may ask for (estimated before work; 422 above).",
    )
    work_slots: int = Field(
        default=8,
        ge=1,
        description="Per-request answers (scoring) in progress at once per worker; concurrent "
        "rows of one model are scored as one batch.",
    )
    scoring_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Threads scoring per-request rows per worker, each one batch at a time "
        "(most of a batch runs in compiled code that releases the interpreter lock).",
    )
    spare_core: bool = Field(
        default=True,
        description="A lone request on a quiet worker shares its native kernels with a spinning "
        "thread on another core (movierec.spare). Turn it off when the host's cores are all "
        "taken by workers: `movierec serve --workers N` does when 2·N exceeds the cores.",
    )
    batch_slots: int = Field(
        default=2, ge=1, description="`POST /recommend/batch` requests computed at once per worker."
    )
    work_queue: int = Field(
        default=32,
        ge=0,
        description="Expensive requests waiting for a slot; more are refused with 503.",
    )
    answer_cache_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Byte budget of the per-worker answer cache (least recently used go first).",
    )
    cache_feedback_answers: bool = Field(
        default=True,
        description="Keep the answers of users with feedback since training too, keyed by "
        "their whole feedback state (a new event makes a new key, so the next answer sees it "
        "at once). Off: each such request is scored afresh (what the per-request rows of "
        "benchmarks/bench_service.py measure).",
    )

    popular_by: Literal["count", "mean"] = Field(
        default="count",
        description="How the popularity model (the cold-start fallback) ranks: by interaction "
        "count, or by damped mean rating among movies with at least popular_min_ratings "
        "ratings. `count` was chosen on cold users (strong-generalization, ml-latest-small: "
        "NDCG@10 0.144 vs 0.070).",
    )
    popular_min_ratings: int = Field(
        default=20,
        ge=0,
        description="Movies with fewer ratings rank after all others in the popularity model.",
    )
    fallback_chain: tuple[str, ...] = Field(
        default=("popularity",), description="Strategies tried, in order, for unknown users."
    )
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="Largest request body.")
    warm_cache: bool = Field(
        default=True,
        description="After a model loads, compute the top-N of the most active users in the "
        "background (readiness never waits for it).",
    )
    warm_users: int = Field(
        default=20_000,
        ge=0,
        description="How many of the most active users the background warm covers (it also "
        "stops at half the answer cache's byte budget).",
    )
    warm_strategies: tuple[str, ...] = Field(
        default=("ranked",),
        description="Strategies warmed besides the default one (when the bundle has them).",
    )
    bundle_retention: int = Field(default=5, ge=2, description="Bundle versions kept on disk.")
    mlflow_uri: SecretStr | None = Field(
        default=None,
        description="MLflow tracking server URI (unset: sqlite database under home; a secret: "
        "it may hold a password).",
    )
    mlflow_experiment: str = Field(default="movierec", description="MLflow experiment name.")
    registered_model: str = Field(default="movierec", description="MLflow registered model.")
    promote_metric: str = Field(
        default="ndcg@10",
        description="Metric a challenger must beat the champion on (rmse/mae: lower wins).",
    )
    min_improve: float = Field(
        default=0.0,
        ge=0,
        description="Least improvement of promote_metric over the champion (same protocol and "
        "data; 0 = at least as good, so a retrain on fresher data is deployed).",
    )
    train_protocol: str = Field(
        default="leave-last-out", description="Protocol of the evaluation before promotion."
    )
    train_dataset: str = Field(
        default="store",
        description="What the scheduler trains on: `store` (the ingested tables) or a release.",
    )
    train_model: str = Field(default="ease", description="Default strategy of scheduled runs.")
    train_strategies: tuple[str, ...] | None = Field(
        default=None,
        description="Strategies of scheduled runs' bundles (comma-separated; default: all).",
    )
    train_interval: str = Field(
        default="1d", description="Scheduled retraining interval: seconds or 30m / 6h / 1d."
    )
    max_reject_rate: float = Field(
        default=0.05, ge=0, le=1, description="Batches rejecting more rows than this fail."
    )
    service_url: str | None = Field(
        default=None, description="Running service to tell about a new model (POST reload)."
    )
    reload_poll_s: float = Field(
        default=2.0, ge=0, description="How often the service checks CURRENT (0 = never)."
    )
    feedback_poll_s: float = Field(
        default=0.2,
        ge=0,
        description="How often the service folds in events stored by other processes "
        "(the stream consumer); 0 = never.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Share rendered answers between API workers and processes through Redis "
        "(redis://host:port/db); unset: each worker caches its own.",
    )
    redis_ttl_s: int = Field(default=86_400, ge=1, description="Lifetime of a shared answer.")
    ann: Literal["exact", "hnsw", "ivf"] = Field(
        default="exact",
        description="Top-k of factor models (als, bpr) for known users: exact, or a faiss "
        "index (hnsw or ivf, inner product) built in the background after a model loads.",
    )
    serve_blas_threads: int = Field(
        default=1,
        ge=1,
        description="BLAS threads of each API worker: a request's products are small, and "
        "threads of concurrent requests would compete for the same cores (scale with "
        "--workers instead).",
    )
    otel: bool = Field(
        default=False,
        description="FastAPI's native OpenTelemetry instrumentation (traces, metrics and logs "
        "of every request, when a provider is configured); off, the per-request check costs "
        "nothing (movierec's own metrics are on /metrics).",
    )
    ranker_compile: bool = Field(
        default=True,
        description="Compile the learned ranker's trees to native code (lleaves) in the "
        "background after each load; LightGBM answers until it is done.",
    )
    spark_master: str = Field(
        default="local[*]",
        description="Spark master URL of the spark training engine (local[*]: every core here).",
    )
    memory_limit: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(\.[0-9]+)?[kmgt]?$",
        description="Cap on the memory ingest, training and evaluation plan to use (4g); "
        "default: what the machine has available.",
    )
    spark_driver_memory: str = Field(
        default="4g",
        pattern=r"^[0-9]+[kmgt]?$",
        description="spark.driver.memory (in local mode the heap of the whole job).",
    )
    ann_min_items: int = Field(
        default=50_000, ge=1, description="Catalogs smaller than this stay exact."
    )
    online_metrics_s: float = Field(
        default=60.0,
        ge=0,
        description="How often the service recomputes online WTR for /metrics (0 = never).",
    )
    online_window: str = Field(
        default="1h", description="Attribution window of the online metrics on /metrics."
    )
    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers (host:port,...)."
    )
    kafka_topic: str = Field(default="movielog", description="Topic of the event stream.")
    request_log_topic: str | None = Field(
        default=None,
        description="Produce a request-log line per /recommend/user answer to this topic "
        "(on MOVIEREC_KAFKA_BOOTSTRAP); unset: no request log.",
    )
    kafka_group: str = Field(default="movierec", description="Consumer group of the consumer.")
    drift_psi_moderate: float = Field(
        default=0.1, gt=0, description="PSI at or above which drift is moderate."
    )
    drift_psi_strong: float = Field(
        default=0.25, gt=0, description="PSI at or above which drift is strong."
    )
    drift_ks_moderate: float = Field(
        default=0.1, gt=0, description="KS statistic (user activity) at or above: moderate."
    )
    drift_ks_strong: float = Field(
        default=0.2, gt=0, description="KS statistic (user activity) at or above: strong."
    )
    experiments_file: Path | None = Field(
        default=None,
        description="The experiment in force (JSON; default MOVIEREC_HOME/experiments.json).",
    )
    drift_min_rows: int = Field(
        default=1000,
        ge=1,
        description="Fewest new interactions the retraining gate judges drift on.",
    )
    drift_gate: bool = Field(
        default=True,
        description="Scheduled runs compute drift first and do not promote on strong drift.",
    )

    @model_validator(mode="after")
    def _register_secrets(self) -> Settings:
        for secret in (self.admin_token, self.api_key, self.admin_password, self.redis_url):
            if secret is not None:
                register_secret(secret.get_secret_value())
        return self

    @staticmethod
    def reveal(secret: SecretStr | None) -> str | None:
        """The value of a secret setting (for the one place that must use it)."""
        return secret.get_secret_value() if secret is not None else None

    @property
    def train_interval_s(self) -> float:
        """``train_interval`` in seconds."""
        return parse_interval(self.train_interval)

    @property
    def batches_dir(self) -> Path:
        """Root of the landing/incoming/processed/failed batch folders."""
        return self.home / "batches"

    @property
    def store_dir(self) -> Path:
        """Folder of the embedded Parquet store."""
        return self.home / "store"

    @property
    def datasets_dir(self) -> Path:
        """Cache of downloaded MovieLens releases."""
        return self.home / "datasets"

    @property
    def bundles_dir(self) -> Path:
        """Published model bundles and the ``CURRENT`` pointer."""
        return self.home / "bundles"

    @property
    def mlflow_db(self) -> Path:
        """The embedded MLflow sqlite database."""
        return self.home / "mlflow.db"

    @property
    def feedback_db(self) -> Path:
        """The embedded feedback database (SQLite, WAL mode)."""
        return self.home / "feedback.db"

    @property
    def experiments_path(self) -> Path:
        """Where the experiment in force is read from."""
        return self.experiments_file or self.home / "experiments.json"

    @property
    def logs_dir(self) -> Path:
        """Log files and reject reports."""
        return self.home / "logs"


def parse_interval(text: str) -> float:
    """``"90"`` -> 90 s, ``"30m"`` -> 1800 s, ``"6h"``, ``"1d"``.

    Raises:
        ValueError: Not a positive duration.
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    factor = units.get(t[-1:])
    number = t[:-1] if factor else t
    try:
        value = float(number) * (factor or 1)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use seconds or 30m, 6h, 1d)") from None
    if value <= 0:
        raise ValueError(f"interval must be positive: {text!r}")
    return value


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings (cached; call ``get_settings.cache_clear()`` in tests)."""
    return Settings()
