"""The one ``Recommender`` interface of movierec, its configs and its bundle format.

A model sees contiguous int32 indices only. It learns from an :class:`InteractionData`, scores
any history (a CSR row per query user) and returns top-k through the shared :func:`topk`.
Known users are scored from what the model learned about them (``score_users``); users the
model never saw, or whose history changed since training, are scored from their history
(``score_history``: fold-in). Saving writes ``model.json`` plus ``arrays.npz`` (no pickle).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from movierec.data import weighting
from movierec.data.interactions import InteractionData
from movierec.models.memory import DataShape, MemoryNeed
from movierec.models.persist import history_arrays, history_from
from movierec.models.topk import topk
from movierec.types import RecBatch, csr, row_lengths

Weighting = Literal["raw", "binary", "confidence", "bm25", "tfidf"]


class ModelConfig(BaseModel):
    """Base of every model's typed config (frozen; unknown keys are errors).

    Attributes:
        weighting: How interaction values become model input: ``raw`` values, ``binary``,
            ``confidence`` (1 + alpha·value), ``bm25`` or ``tfidf``.
        alpha: Confidence scale for ``confidence``.
        recency_half_life: When set, a user's history is weighted by recency when scoring:
            the n-th most recent interaction counts ``0.5 ** (n / recency_half_life)``.
        recency_floor: The least weight an old interaction keeps:
            ``floor + (1 - floor) · 0.5 ** (n / half_life)``.
        train_half_life_days: When set, training interactions decay with their age (from the
            newest interaction in the data) with this half-life.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    weighting: Weighting = "binary"
    alpha: float = Field(default=1.0, gt=0)
    recency_half_life: float | None = Field(default=None, gt=0)
    recency_floor: float = Field(default=0.0, ge=0, le=1)
    train_half_life_days: float | None = Field(default=None, gt=0)

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the config (run identity)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainOptions:
    """How to train, as opposed to what to train (the config); side data is in the data.

    Attributes:
        seed: Random seed; the same seed gives the same model.
        threads: Worker threads (0 = all cores).
        use_gpu: Use a CUDA implementation when one is available.
        future_targets: Whether the items to predict come after the user's history in time
            (true in serving, leave-last-out and temporal evaluation). Recency weighting is
            applied only then: under random hold-out protocols the "most recent" history item
            says nothing about the held-out ones.
        fitted: Models already fitted on the same data and options, by strategy name (a
            model made of others, ``ranked``, shares an equal one instead of fitting a copy).
    """

    seed: int = 42
    threads: int = 0
    use_gpu: bool = False
    future_targets: bool = True
    fitted: Mapping[str, Recommender] | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class SharedParts:
    """What a bundle stores once for all its models.

    That is the training history, and the models other models refer to by name (``ranked``'s
    candidate sources).
    """

    history: sp.csr_matrix
    history_ts: sp.csr_matrix | None
    models: Mapping[str, Recommender] = field(default_factory=dict)


class Recommender(ABC):
    """Base of every model: fit, score, recommend, similar items, fold-in, save and restore.

    A subclass declares its ``name`` and annotates ``config`` with its config class; that
    annotation is the one place the config class is named (``config_class`` is derived).
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    #: Interaction value of a "liked" item in :meth:`fold_in` (5 stars for rating models).
    liked_value: ClassVar[float] = 1.0
    #: Whether scoring needs a non-empty history. Such a model cannot score a user without
    #: one, and says so: that row of :meth:`score_rows` is NaN (top-k then returns nothing),
    #: so a fallback chain moves on to its next entry.
    needs_history: ClassVar[bool] = True

    config: ModelConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hint = inspect.get_annotations(cls).get("config")
        if hint is None:
            return
        if isinstance(hint, str):  # postponed annotations: resolve in the class's module
            hint = eval(hint, vars(sys.modules[cls.__module__]), dict(vars(cls)))
        if not (isinstance(hint, type) and issubclass(hint, ModelConfig)):
            raise TypeError(f"{cls.__name__}.config must be annotated with a ModelConfig class")
        cls.config_class = hint

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = config or self.config_class()
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{self.name} needs a {self.config_class.__name__}")
        self.n_users = 0
        self.n_items = 0
        self.history = sp.csr_matrix((0, 0), dtype=np.float32)
        self.history_ts: sp.csr_matrix | None = None
        self.weight_stats: dict[str, np.ndarray] = {}
        self.use_recency = True
        self.fitted = False

    # ----------------------------------------------------------------- training
    def memory_need(self, shape: DataShape, budget: int) -> MemoryNeed:
        """Memory of fitting this model on data of ``shape``, known before fitting.

        ``budget`` is what this model may use on its own; a model whose need can be cut by
        a setting says which value fits it. The default: a few weighted copies of the
        interactions while fitting, nothing large kept.
        """
        return MemoryNeed(self.name, 0, 3 * shape.matrix_bytes, "copies of the interactions")

    def fit(self, data: InteractionData, options: TrainOptions | None = None) -> Self:
        """Learn from interactions; the training history is kept for exclude-seen."""
        options = options or TrainOptions()
        self.use_recency = options.future_targets
        self.n_users, self.n_items = data.n_users, data.n_items
        self.history = data.matrix
        self.history_ts = data.timestamp_matrix()
        self.weight_stats = {
            "idf": weighting.item_idf(data.matrix).astype(np.float32),
            "avg_length": np.array([weighting.mean_row_length(data.matrix)]),
        }
        x = self.weigh(data.matrix)
        if self.config.train_half_life_days is not None:
            x = weighting.time_decay(x, data.timestamps, self.config.train_half_life_days)
        self._fit(x, data, options)
        self.fitted = True
        return self

    @abstractmethod
    def _fit(self, x: sp.csr_matrix, data: InteractionData, options: TrainOptions) -> None:
        """Learn from the weighted user×item matrix ``x``."""

    def weigh(self, values: sp.csr_matrix) -> sp.csr_matrix:
        """Apply the configured weighting to interaction values.

        BM25 and TF-IDF use the statistics of the training data (item idf, mean history
        length), so the weights of a user never depend on the other rows of a batch.
        """
        w = self.config.weighting
        if w == "raw":
            return sp.csr_matrix(values, dtype=np.float32)
        if w == "binary":
            return weighting.binary(values)
        if w == "confidence":
            return weighting.confidence(values, self.config.alpha)
        idf = self.weight_stats["idf"]
        if w == "bm25":
            return weighting.bm25(
                values, idf=idf, avg_length=float(self.weight_stats["avg_length"][0])
            )
        return weighting.tfidf(values, idf=idf)

    def scoring_input(
        self, values: sp.csr_matrix, timestamps: sp.csr_matrix | None = None
    ) -> sp.csr_matrix:
        """Weighted history used for scoring, with recency weights when configured."""
        x = self.weigh(values)
        half_life = self.config.recency_half_life
        if half_life is not None and self.use_recency and timestamps is not None and x.nnz:
            floor = self.config.recency_floor
            w = floor + (1.0 - floor) * weighting.recency_weights(timestamps, half_life)
            x = csr(x.data * w, x.indices, x.indptr, x.shape)
        return x

    # ------------------------------------------------------------------ scoring
    @abstractmethod
    def score_history(self, x: sp.csr_matrix) -> np.ndarray:
        """Scores (n × n_items, float32) for users given by their weighted history rows."""

    def score_rows(
        self, values: sp.csr_matrix, timestamps: sp.csr_matrix | None = None
    ) -> np.ndarray:
        """Scores (n × n_items) for users given by raw history rows (values and times).

        The one entry point for scoring a history: known users, fold-in, feedback overlays.
        Models that need more than the weighted row (the ranker) override it. Rows a model
        cannot score (an empty history when :attr:`needs_history`) are NaN.
        """
        scores = self.score_history(self.scoring_input(values, timestamps))
        if self.needs_history:
            rows = values if isinstance(values, sp.csr_matrix) else sp.csr_matrix(values)
            empty = row_lengths(rows.indptr) == 0
            if empty.any():
                scores = np.asarray(scores, dtype=np.float32)
                scores[empty] = np.nan
        return scores

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Scores (len(users) × n_items) for known users (default: from their history)."""
        users = np.asarray(users, dtype=np.int64)
        ts = self.history_ts[users] if self.history_ts is not None else None
        return self.score_rows(self.history[users], ts)

    def _check_users(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            raise IndexError("user index out of range")
        return users

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{self.name} is not fitted")

    def recommend(
        self,
        users: np.ndarray | list[int],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
    ) -> RecBatch:
        """Top-k items for a batch of known users (indices into the training vocabulary)."""
        u = self._check_users(np.asarray(users))
        scores = self.score_users(u)
        exclude = self.history[u] if exclude_seen else None
        return topk(scores, k, exclude=exclude, candidates=candidates)

    def recommend_history(
        self,
        values: sp.csr_matrix,
        k: int = 10,
        *,
        timestamps: sp.csr_matrix | None = None,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
    ) -> RecBatch:
        """Top-k for users given by history rows (new users, or histories updated by feedback)."""
        self._check_fitted()
        values = sp.csr_matrix(values, dtype=np.float32)
        if values.shape[1] != self.n_items:
            raise ValueError(f"history must have {self.n_items} columns")
        scores = self.score_rows(values, timestamps)
        return topk(scores, k, exclude=values if exclude_seen else None, candidates=candidates)

    def fold_in(
        self, liked: np.ndarray | list[int], weights: np.ndarray | None = None
    ) -> np.ndarray:
        """Score every item (float32, n_items) for a user the model never saw.

        Args:
            liked: Item indices the user liked (their order is taken as oldest to newest).
            weights: Optional interaction value per liked item (default :attr:`liked_value`).
        """
        self._check_fitted()
        items = np.asarray(liked, dtype=np.int64)
        if items.size and (items.min() < 0 or items.max() >= self.n_items):
            raise IndexError("item index out of range")
        vals = (
            np.full(items.size, self.liked_value, np.float32)
            if weights is None
            else np.asarray(weights, np.float32)
        )
        row = sp.csr_matrix(
            (vals, (np.zeros(items.size, np.int64), items)), shape=(1, self.n_items)
        )
        ts = sp.csr_matrix(
            (
                np.arange(1, items.size + 1, dtype=np.float64),
                (np.zeros(items.size, np.int64), items),
            ),
            shape=(1, self.n_items),
        )
        return self.score_rows(row, ts)[0]

    def similar_items(self, items: np.ndarray | list[int], k: int = 10) -> RecBatch:
        """The k most similar items to each given item (never the item itself)."""
        self._check_fitted()
        idx = np.atleast_1d(np.asarray(items, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_items):
            raise IndexError("item index out of range")
        sims = self.item_similarity(idx)
        sims[np.arange(idx.size), idx] = -np.inf
        return topk(sims, k)

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Similarity of the given items to every item (default: cosine of item vectors)."""
        vec = self.item_vectors()
        norms = np.linalg.norm(vec, axis=1)
        norms[norms == 0] = 1.0
        unit = vec / norms[:, None]
        return (unit[items] @ unit.T).astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        """Dense item representation used for similarity (models override)."""
        raise NotImplementedError(f"{self.name} has no item vectors")

    # -------------------------------------------------------------- persistence
    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """Learned arrays to save."""

    @abstractmethod
    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore learned arrays."""

    def save(self, folder: Path, *, with_history: bool = True) -> None:
        """Write ``model.json`` and ``arrays.npz`` into ``folder``.

        ``with_history=False`` leaves the training history out (a bundle stores it once for all
        its models; :meth:`restore` then takes it from :class:`SharedParts`).
        """
        self._check_fitted()
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"model_{k}": v for k, v in self._arrays().items()}
        if with_history:
            arrays |= history_arrays(self.history, self.history_ts)
        arrays |= {f"weight_{k}": v for k, v in self.weight_stats.items()}
        with (folder / "arrays.npz").open("wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
        meta = {
            "model": self.name,
            "config": self.config.model_dump(mode="json"),
            "config_hash": self.config.config_hash(),
            "n_users": self.n_users,
            "n_items": self.n_items,
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=2))
        self._save_extra(folder, with_history)

    def _save_extra(self, folder: Path, with_history: bool) -> None:  # noqa: B027 (hook)
        """Write anything beyond the arrays (composite models: their parts)."""

    def _load_extra(self, folder: Path, shared: SharedParts | None) -> None:  # noqa: B027
        """Read what :meth:`_save_extra` wrote."""

    def restore(
        self, folder: Path, meta: dict[str, Any], shared: SharedParts | None = None
    ) -> None:
        """Fill this (unfitted) model from what :meth:`save` wrote; ``meta`` is ``model.json``.

        A model saved without its history takes it from ``shared``. Creating the right class
        for a folder is :func:`movierec.strategies.load`'s job.
        """
        with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        self.n_users, self.n_items = int(meta["n_users"]), int(meta["n_items"])
        if "history_data" in arrays:
            self.history, self.history_ts = history_from(arrays, (self.n_users, self.n_items))
        elif shared is not None:
            self.history, self.history_ts = shared.history, shared.history_ts
        else:
            raise ValueError(f"{self.name} was saved without its history: load it with its bundle")
        self.weight_stats = {k[7:]: v for k, v in arrays.items() if k.startswith("weight_")}
        self._load_arrays({k[6:]: v for k, v in arrays.items() if k.startswith("model_")})
        self._load_extra(folder, shared)
        self.fitted = True

    def describe(self) -> dict[str, Any]:
        """Name, config and shape, for logs and manifests."""
        return {
            "model": self.name,
            "config": self.config.model_dump(mode="json"),
            "config_hash": self.config.config_hash(),
            "n_users": self.n_users,
            "n_items": self.n_items,
        }
