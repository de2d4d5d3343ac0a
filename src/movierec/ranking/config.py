"""The typed configuration of the ``ranked`` strategy."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from movierec.models.base import ModelConfig
from movierec.ranking.candidates import DEFAULT_SOURCES

LabelSplit = Literal["last", "temporal", "random"]


class RankedConfig(ModelConfig):
    """Multi-stage ranker settings.

    Attributes:
        sources: Candidate sources (model names).
        source_params: Config overrides per source.
        per_source: Items each source proposes per user. Pool recall rises with it, and so
            does the per-request cost (every candidate gets features and the trees); 75
            with ``learning_rate`` 0.1 and 15 leaves was chosen on the leave-last-out
            validation split against 150 / 0.05 / 31 and six other settings
            (``benchmarks/bench_ranker_cost.py``: NDCG@10 +0.0032 ± 0.0006 over 2 seeds at
            0.64x the CPU a fold-in row).
        learner: ``lambdarank`` (LightGBM) or ``histgb`` (scikit-learn binary classifier,
            an evaluation baseline; it is not saved into bundles).
        drop_groups: Feature groups left out (``source``, ``user``, ``item``, ``cross``).
        label_split: How training labels are held out (:mod:`movierec.data.splits` does it):
            ``last`` (each user's latest ``label_items``: next items, as in serving),
            ``temporal`` (after the temporal protocol's global cutoff) or ``random`` (the
            stratified protocol's random share per user). The evaluation runner sets it to
            match the protocol a model is judged on.
        label_items: Latest interactions per user turned into next-item training queries
            under ``last`` (16 was chosen on the leave-last-out validation split; more queries
            per user was better up to there).
        max_train_queries: Queries sampled for ranker training.
        negatives: Pool items drawn at random per training query as negatives (``None``:
            the whole pool).
        n_estimators: Boosting rounds (early stopping on 10% of the training users).
        learning_rate: Boosting learning rate.
        num_leaves: Leaves per tree.
        min_child_samples: Least examples per leaf.
        diversity: MMR weight over genres in [0, 1); 0 = no re-rank.
        diversity_depth: How many top items the MMR re-rank reorders.
    """

    sources: tuple[str, ...] = DEFAULT_SOURCES
    source_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    per_source: int = Field(default=75, ge=1)
    learner: Literal["lambdarank", "histgb"] = "lambdarank"
    drop_groups: tuple[str, ...] = ()
    label_split: LabelSplit = "last"
    label_items: int = Field(default=16, ge=1)
    max_train_queries: int = Field(default=20_000, ge=10)
    negatives: int | None = Field(default=100, ge=1)
    n_estimators: int = Field(default=400, ge=1)
    learning_rate: float = Field(default=0.1, gt=0)
    num_leaves: int = Field(default=15, ge=2)
    min_child_samples: int = Field(default=20, ge=1)
    diversity: float = Field(default=0.0, ge=0, lt=1)
    diversity_depth: int = Field(default=50, ge=2)
