"""Biased matrix factorisation for explicit ratings (``μ + b_u + b_i + p_u·q_i``).

Trained by alternating ridge regressions with frequency-weighted regularisation (each user or
item step is an exact least-squares solve, so training is deterministic given the seed and
needs no learning rate). Predictions are clipped to [0.5, 5].
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from movierec.data.interactions import InteractionData
from movierec.models.base import ModelConfig, Recommender, TrainOptions
from movierec.models.memory import DataShape, MemoryNeed

MIN_RATING, MAX_RATING = 0.5, 5.0


class MFConfig(ModelConfig):
    """Biased-MF settings.

    Attributes:
        factors: Latent dimensions.
        regularization: Ridge penalty on factors, scaled by each row's number of ratings.
        bias_regularization: Ridge penalty on the biases (absolute, not scaled).
        iterations: Alternating sweeps.
        init_scale: Standard deviation of the random initial factors.
    """

    weighting: Literal["raw"] = "raw"
    factors: int = Field(default=32, ge=1)
    regularization: float = Field(default=0.15, ge=0)
    bias_regularization: float = Field(default=5.0, ge=0)
    iterations: int = Field(default=15, ge=1)
    init_scale: float = Field(default=0.1, gt=0)


def _ridge_step(
    m: sp.csr_matrix, residual_base: np.ndarray, fixed: np.ndarray, reg: float, bias_reg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Ridge-solve ``[p, b]`` per row of ``m`` for ``m.data - residual_base`` on ``[fixed, 1]``."""
    f = fixed.shape[1]
    feats = np.hstack([fixed, np.ones((fixed.shape[0], 1))]).astype(np.float64)
    factors = np.zeros((m.shape[0], f), dtype=np.float64)
    biases = np.zeros(m.shape[0], dtype=np.float64)
    penalty = np.zeros(f + 1)
    for r in range(m.shape[0]):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        if lo == hi:
            continue
        cols = m.indices[lo:hi]
        target = m.data[lo:hi].astype(np.float64) - residual_base[lo:hi]
        x = feats[cols]
        penalty[:f] = reg * (hi - lo)
        penalty[f] = bias_reg
        sol = np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ target)
        factors[r], biases[r] = sol[:f], sol[f]
    return factors, biases


class BiasedMF(Recommender):
    """The rating predictor (RMSE/MAE); it also ranks items by predicted rating."""

    name = "mf"
    needs_history = False  # item biases alone rank items for a user without history
    liked_value = 5.0
    config: MFConfig

    def __init__(self, config: MFConfig | None = None) -> None:
        super().__init__(config)
        self.mu = 0.0
        self.user_bias = np.zeros(0, np.float32)
        self.item_bias = np.zeros(0, np.float32)
        self.user_factors = np.zeros((0, 0), np.float32)
        self.item_factors = np.zeros((0, 0), np.float32)

    def memory_need(self, shape: DataShape, budget: int) -> MemoryNeed:
        """Factors and biases kept; float64 copies of the ratings both ways while fitting."""
        f = self.config.factors + 1
        kept = (shape.n_users + shape.n_items) * f * 4
        return MemoryNeed(
            self.name, kept, shape.nnz * 64 + 4 * kept, f"{f - 1} factors, float64 ridge steps"
        )

    def _fit(self, x: sp.csr_matrix, data: InteractionData, options: TrainOptions) -> None:
        c = self.config
        rng = np.random.default_rng(options.seed)
        r = sp.csr_matrix(data.matrix, dtype=np.float64)
        rt = r.T.tocsr()
        self.mu = float(r.data.mean()) if r.nnz else 3.5
        n_u, n_i = r.shape
        p = rng.normal(0, c.init_scale, (n_u, c.factors))
        q = rng.normal(0, c.init_scale, (n_i, c.factors))
        bu, bi = np.zeros(n_u), np.zeros(n_i)
        # the systems are small (factors + 1): threaded BLAS only adds synchronisation, and
        # OpenBLAS threads spin while another process holds a core (a 20M-rating fit took 2.2x
        # as long per sweep beside another job; one thread does not slow down)
        with threadpool_limits(1, "blas"):
            for _ in range(c.iterations):
                # user step: targets r - mu - b_i
                p, bu = _ridge_step(
                    r, self.mu + bi[r.indices], q, c.regularization, c.bias_regularization
                )
                # item step: targets r - mu - b_u
                q, bi = _ridge_step(
                    rt, self.mu + bu[rt.indices], p, c.regularization, c.bias_regularization
                )
        self.user_factors, self.item_factors = p.astype(np.float32), q.astype(np.float32)
        self.user_bias, self.item_bias = bu.astype(np.float32), bi.astype(np.float32)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of (user, item) pairs, clipped to [0.5, 5].

        A user or item index of -1 (unknown) falls back to the bias terms that are known.
        """
        self._check_fitted()
        u = np.asarray(users, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        ku, ki = u >= 0, i >= 0
        pred = np.full(u.shape, self.mu, dtype=np.float64)
        pred[ku] += self.user_bias[u[ku]]
        pred[ki] += self.item_bias[i[ki]]
        both = ku & ki
        pred[both] += np.einsum("ij,ij->i", self.user_factors[u[both]], self.item_factors[i[both]])
        return np.clip(pred, MIN_RATING, MAX_RATING).astype(np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Predicted ratings of every item."""
        u = np.asarray(users, dtype=np.int64)
        s = self.user_factors[u] @ self.item_factors.T
        return (s + self.user_bias[u][:, None] + self.item_bias + self.mu).astype(np.float32)

    def score_history(self, x: sp.csr_matrix) -> np.ndarray:
        """Fold-in: ridge-fit user factors and bias on the given ratings, then predict."""
        base = self.mu + self.item_bias[x.indices].astype(np.float64)
        c = self.config
        p, b = _ridge_step(
            sp.csr_matrix(x), base, self.item_factors, c.regularization, c.bias_regularization
        )
        s = p @ self.item_factors.T + b[:, None] + self.item_bias + self.mu
        return s.astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        """The item factors."""
        return self.item_factors

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "mu": np.array([self.mu]),
            "user_bias": self.user_bias,
            "item_bias": self.item_bias,
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
        }

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.mu = float(arrays["mu"][0])
        self.user_bias, self.item_bias = arrays["user_bias"], arrays["item_bias"]
        self.user_factors, self.item_factors = arrays["user_factors"], arrays["item_factors"]
