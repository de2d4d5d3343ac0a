"""ALS on Spark MLlib: the same weighted matrix, factors exported as numpy arrays.

``ALS(engine="spark")`` trains with :class:`pyspark.ml.recommendation.ALS` (implicit
preferences) instead of the ``implicit`` library. The weighted user×item matrix that every
engine sees (after the protocol's split, feedback merge and confidence weighting, done once
in the data layer) is written as a Parquet table of ``(user, item, rating)`` indices; Spark
reads that table, fits, and its user and item factors come back into the same arrays the
``implicit`` engine fills, so a bundle, fold-in and the service do not know which engine
trained it.

Differences that are Spark's, stated so metrics can be compared honestly: MLlib scales the
regularisation by each user's and item's number of ratings ("ALS-WR"), and its confidence
is ``1 + alpha·|r|`` with ``alpha = 1`` here (our weighting already holds ``alpha·value``),
the same confidence ``implicit`` is given.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

logger = logging.getLogger(__name__)


#: Iterations between ALS checkpoints (MLlib's ``checkpointInterval``).
CHECKPOINT_INTERVAL = 5


class SparkUnavailableError(RuntimeError):
    """pyspark or a Java runtime is missing."""


def spark_session(master: str, driver_memory: str, app: str = "movierec") -> Any:
    """A Spark session for ``master`` (``local[*]`` or a cluster URL), without the web UI."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:  # pragma: no cover - pyspark is a dependency
        raise SparkUnavailableError("the spark engine needs pyspark: pip install pyspark") from e
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise SparkUnavailableError("the spark engine needs a Java runtime (17 or newer)")
    builder = (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", os.environ.get("SPARK_DRIVER_HOST", "127.0.0.1"))
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.log.level", "WARN")
    )
    if master.startswith("local"):
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1")
    return builder.getOrCreate()


def write_triples(x: sp.csr_matrix, path: Path) -> int:
    """Write the nonzeros of ``x`` as a Parquet table ``(user, item, rating)``; rows written."""
    coo = sp.coo_matrix(x)
    table = pa.table(
        {
            "user": pa.array(coo.row.astype(np.int32)),
            "item": pa.array(coo.col.astype(np.int32)),
            "rating": pa.array(coo.data.astype(np.float32)),
        }
    )
    pq.write_table(table, path, row_group_size=1_000_000)
    return int(coo.nnz)


def _factors(frame: Any, n: int, rank: int) -> np.ndarray:
    """``(id, features)`` rows of a Spark factor frame as an ``(n, rank)`` array (0 = absent)."""
    table = frame.toArrow()
    out = np.zeros((n, rank), np.float32)
    ids = table.column("id").to_numpy()
    if ids.size:
        feats = table.column("features").combine_chunks().flatten().to_numpy()
        out[ids] = feats.reshape(ids.size, rank)
    return out


def fit_spark_als(
    x: sp.csr_matrix,
    *,
    factors: int,
    regularization: float,
    iterations: int,
    seed: int,
    master: str,
    driver_memory: str,
    scratch: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit implicit-preference ALS on Spark; returns ``(user_factors, item_factors)``.

    Args:
        x: Weighted user×item matrix (confidence minus one, as ``implicit`` is given).
        factors: Rank.
        regularization: MLlib's ``regParam``.
        iterations: MLlib's ``maxIter``.
        seed: Random seed.
        master: Spark master URL.
        driver_memory: ``spark.driver.memory`` (local mode: the whole job's heap).
        scratch: Folder for the Parquet input (a temporary folder when ``None``).
    """
    from pyspark.ml import recommendation

    owned = scratch is None
    folder = Path(tempfile.mkdtemp(prefix="movierec-spark-")) if scratch is None else scratch
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.parquet"
    try:
        rows = write_triples(x, path)
        t0 = time.perf_counter()
        spark = spark_session(master, driver_memory, "movierec-als")
        try:
            # ALS's lineage grows with every iteration; without checkpoints the tasks of a
            # large job overflow the JVM stack when deserialised (seen at 20M ratings × 87k
            # items): cut it every few iterations
            spark.sparkContext.setCheckpointDir(str(folder / "checkpoints"))
            frame = spark.read.parquet(str(path))
            als = recommendation.ALS(
                rank=factors,
                maxIter=iterations,
                regParam=regularization,
                implicitPrefs=True,
                alpha=1.0,
                userCol="user",
                itemCol="item",
                ratingCol="rating",
                seed=seed,
                coldStartStrategy="drop",
                checkpointInterval=CHECKPOINT_INTERVAL,
            )
            model = als.fit(frame)
            users = _factors(model.userFactors, x.shape[0], factors)
            items = _factors(model.itemFactors, x.shape[1], factors)
        finally:
            spark.stop()
        logger.info(
            "spark ALS: %d ratings, rank %d, %d iterations on %s in %.1f s",
            rows,
            factors,
            iterations,
            master,
            time.perf_counter() - t0,
        )
        return users, items
    finally:
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
