"""Latent-factor models through the ``implicit`` library: ALS and BPR.

The user×item orientation is handled here once: ``implicit`` (>= 0.5) takes user×item
matrices for ``fit``; factors come back as numpy arrays (converted from the GPU when CUDA is
used). Fold-in for new users is weighted least squares against the item factors, batched.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from movierec.data.interactions import InteractionData
from movierec.models.ann import AnnIndex
from movierec.models.base import ModelConfig, Recommender, TrainOptions, Weighting
from movierec.models.memory import DataShape, MemoryNeed, fmt_bytes, parse_memory
from movierec.types import RecBatch, row_lengths

logger = logging.getLogger(__name__)


def gpu_available() -> bool:
    """Whether implicit was built with CUDA and a device is present."""
    try:
        import implicit.gpu

        return bool(implicit.gpu.HAS_CUDA)
    except Exception:  # pragma: no cover - depends on the build
        return False


def fold_in_factors(
    x: sp.csr_matrix,
    item_factors: np.ndarray,
    regularization: float,
    gram: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Implicit-feedback least squares for each row of ``x`` (confidence = stored value).

    Solves ``(YᵀY + Σ_i (c_i - 1) y_i y_iᵀ + λI) u = Σ_i c_i y_i`` per user: the user step of
    implicit ALS, so a fold-in user gets the factors ALS would give them. ``gram`` is
    ``(Y as float64, YᵀY)`` when the caller keeps them (they depend on the items only).
    """
    y, yty = gram if gram is not None else item_gram(item_factors)
    f = y.shape[1]
    out = np.zeros((x.shape[0], f), dtype=np.float32)
    rows = np.flatnonzero(row_lengths(x.indptr))
    a = np.empty((rows.size, f, f))
    b = np.empty((rows.size, f, 1))
    for j, r in enumerate(rows.tolist()):
        lo, hi = x.indptr[r], x.indptr[r + 1]
        items, conf = x.indices[lo:hi], x.data[lo:hi].astype(np.float64)
        yi = y[items]
        # (YᵀY + Yᵢᵀ(C - I)Yᵢ) + λI, summed in that order (λI adds 0 off the diagonal)
        np.matmul(yi.T * (conf - 1.0), yi, out=a[j])
        a[j] += yty
        a[j].flat[:: f + 1] += regularization
        np.matmul(yi.T, conf, out=b[j, :, 0])
    if rows.size:  # one batched LAPACK solve: each system as np.linalg.solve alone solves it
        out[rows] = np.linalg.solve(a, b)[:, :, 0]
    return out


def item_gram(item_factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Y as float64, YᵀY)`` of item factors, the fixed part of every fold-in."""
    y = item_factors.astype(np.float64)
    return y, y.T @ y


class FactorConfig(ModelConfig):
    """Shared factor-model settings.

    Attributes:
        factors: Latent dimensions.
        regularization: L2 penalty.
        iterations: Training sweeps (ALS) or epochs (BPR).
    """

    factors: int = Field(default=64, ge=1)
    regularization: float = Field(default=0.05, ge=0)
    iterations: int = Field(default=15, ge=1)


class ALSConfig(FactorConfig):
    """ALS settings: confidence weighting ``1 + alpha·value`` by default.

    Attributes:
        engine: ``implicit`` (this machine's cores) or ``spark`` (Spark MLlib on
            ``MOVIEREC_SPARK_MASTER``; see :mod:`movierec.models.spark_als`).
    """

    weighting: Weighting = "confidence"
    alpha: float = Field(default=5.0, gt=0)
    engine: Literal["implicit", "spark"] = "implicit"


class BPRConfig(FactorConfig):
    """BPR settings (defaults chosen by ``movierec tune bpr`` on a validation split)."""

    factors: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=0.01, gt=0)
    iterations: int = Field(default=50, ge=1)
    regularization: float = Field(default=0.001, ge=0)


class FactorModel(Recommender):
    """Shared by ALS and BPR: implicit's fit, fold-in, exact or approximate top-k."""

    config: FactorConfig

    def __init__(self, config: FactorConfig | None = None) -> None:
        super().__init__(config)
        self.user_factors = np.zeros((0, 0), np.float32)
        self.item_factors = np.zeros((0, 0), np.float32)
        self.device = "cpu"
        #: Approximate top-k for known users when attached (the service's MOVIEREC_ANN).
        self.ann: AnnIndex | None = None

    #: The implicit class: (module under ``implicit.cpu`` / ``implicit.gpu``, class name).
    implicit_class: tuple[str, str]
    #: Constructor arguments every instance passes.
    fixed_kwargs: ClassVar[dict[str, Any]] = {}

    def _extra_kwargs(self) -> dict[str, Any]:
        return dict(self.fixed_kwargs)

    def _make(self, options: TrainOptions) -> Any:
        import importlib

        c = self.config
        kwargs: dict[str, Any] = {
            "factors": c.factors,
            "regularization": c.regularization,
            "iterations": c.iterations,
            "random_state": options.seed,
            **self._extra_kwargs(),
        }
        module, name = self.implicit_class
        if self.device == "cuda":  # pragma: no cover - needs CUDA
            return getattr(importlib.import_module(f"implicit.gpu.{module}"), name)(**kwargs)
        cls = getattr(importlib.import_module(f"implicit.cpu.{module}"), name)
        return cls(num_threads=options.threads, **kwargs)

    def memory_need(self, shape: DataShape, budget: int) -> MemoryNeed:
        """Factors kept; implicit's user×item and item×user copies while fitting."""
        f = self.config.factors + 1
        factors = (shape.n_users + shape.n_items) * f * 4
        return MemoryNeed(
            self.name,
            factors,
            4 * shape.matrix_bytes + 2 * factors,
            f"{f - 1} factors of {shape.n_users:,} users and {shape.n_items:,} items",
        )

    def _fit(self, x: sp.csr_matrix, data: InteractionData, options: TrainOptions) -> None:
        use_gpu = options.use_gpu and gpu_available()
        self.device = "cuda" if use_gpu else "cpu"
        # implicit parallelises over users itself; BLAS threads on top of that only contend
        with threadpool_limits(1, "blas"):
            model = self._make(options)
            model.fit(x, show_progress=False)
        if use_gpu:  # pragma: no cover - needs CUDA
            model = model.to_cpu()
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)

    def use_ann(self, index: AnnIndex | None) -> None:
        """Answer known users' top-k from ``index`` (built over :meth:`item_vectors`)."""
        self.ann = index

    def recommend(
        self,
        users: np.ndarray | list[int],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
    ) -> RecBatch:
        """Top-k for known users: exact, or from the attached approximate index."""
        if self.ann is None or candidates is not None:
            return super().recommend(users, k, exclude_seen=exclude_seen, candidates=candidates)
        u = self._check_users(np.asarray(users))
        exclude = self.history[u] if exclude_seen else None
        return self.ann.top_k(self.user_factors[u], k, exclude)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Dot products of the learned user factors with every item."""
        return self.user_factors[np.asarray(users, dtype=np.int64)] @ self.item_factors.T

    def score_history(self, x: sp.csr_matrix) -> np.ndarray:
        """Fold-in: least-squares user factors from the history, then dot products."""
        y = self._fold_item_factors()
        u = fold_in_factors(x, y, self.config.regularization, self._gram(y))
        return np.asarray(u @ self._transposed(y), np.float32)

    def _gram(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Gram matrix of ``y`` (the item factors or a slice of them), computed once.

        A refit or a load replaces ``item_factors``, and so invalidates the cache.
        """
        cached = getattr(self, "_gram_cache", None)
        if cached is None or cached[0] is not self.item_factors or cached[1] != y.shape:
            cached = (self.item_factors, y.shape, item_gram(y))
            self._gram_cache = cached
        return cached[2]

    def _transposed(self, y: np.ndarray) -> np.ndarray:
        """``y.T`` made contiguous once (the scoring product reads it 2.7× faster)."""
        cached = self.__dict__.get("_yt")
        if cached is None or cached[0] is not y:
            cached = (y, np.ascontiguousarray(y.T))
            self.__dict__["_yt"] = cached
        return cached[1]

    def _fold_item_factors(self) -> np.ndarray:
        return self.item_factors

    def item_vectors(self) -> np.ndarray:
        """The item factors."""
        return self.item_factors

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors = arrays["user_factors"]
        self.item_factors = arrays["item_factors"]


class ALS(FactorModel):
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008) via ``implicit``; GPU when available."""

    name = "als"
    config: ALSConfig
    implicit_class = ("als", "AlternatingLeastSquares")
    fixed_kwargs: ClassVar[dict[str, Any]] = {"alpha": 1.0}  # our weighting applies confidence

    def memory_need(self, shape: DataShape, budget: int) -> MemoryNeed:
        """As any factor model; the spark engine adds its JVM (spark.driver.memory)."""
        need = super().memory_need(shape, budget)
        if self.config.engine != "spark":
            return need
        from movierec.settings import get_settings

        jvm = parse_memory(get_settings().spark_driver_memory)
        return MemoryNeed(
            need.strategy,
            need.resident,
            need.transient + jvm + 2 * shape.matrix_bytes,
            need.detail + f", a Spark driver of {fmt_bytes(jvm)}",
            "a smaller MOVIEREC_SPARK_DRIVER_MEMORY or a cluster MOVIEREC_SPARK_MASTER",
        )

    def _fit(self, x: sp.csr_matrix, data: InteractionData, options: TrainOptions) -> None:
        if self.config.engine == "implicit":
            super()._fit(x, data, options)
            return
        from movierec.models.spark_als import fit_spark_als
        from movierec.settings import get_settings

        settings = get_settings()
        self.device = "spark"
        c = self.config
        self.user_factors, self.item_factors = fit_spark_als(
            x,
            factors=c.factors,
            regularization=c.regularization,
            iterations=c.iterations,
            seed=options.seed,
            master=settings.spark_master,
            driver_memory=settings.spark_driver_memory,
        )


class BPR(FactorModel):
    """Bayesian personalised ranking via ``implicit`` (item factors carry a bias column)."""

    name = "bpr"
    config: BPRConfig
    implicit_class = ("bpr", "BayesianPersonalizedRanking")

    def _extra_kwargs(self) -> dict[str, Any]:
        return {"learning_rate": self.config.learning_rate}

    def score_history(self, x: sp.csr_matrix) -> np.ndarray:
        """Fold-in on the factor part; the learned item bias is added back."""
        y = self.item_factors[:, :-1]
        u = fold_in_factors(
            sp.csr_matrix(x), y, max(self.config.regularization, 1e-3), self._gram(y)
        )
        return (u @ y.T + self.item_factors[:, -1]).astype(np.float32)
