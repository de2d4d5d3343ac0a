"""Memory the ``ranked`` strategy needs to be fitted, from the data's shape alone."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from movierec.models.base import Recommender
from movierec.models.memory import DataShape, MemoryNeed
from movierec.ranking.candidates import CANDIDATE_CHUNK_BYTES
from movierec.ranking.config import RankedConfig
from movierec.ranking.features import FEATURE_GROUPS


def ranked_memory_need(
    c: RankedConfig,
    create: Callable[[str, Mapping[str, Any] | None], Recommender],
    shape: DataShape,
    budget: int,
) -> MemoryNeed:
    """Sources twice (label split, then everything), feature store, training examples.

    At most ``label_items`` training queries per user, ``max_train_queries`` in all.
    """
    needs = [create(n, c.source_params.get(n)).memory_need(shape, budget) for n in c.sources]
    sources = sum(n.resident for n in needs)
    store = shape.nnz * 32 + shape.n_items * 100 * 8
    per_query = (c.negatives or c.per_source * len(c.sources)) + c.label_items
    width = 3 * len(c.sources) + 1 + sum(len(g) for g in FEATURE_GROUPS.values())
    queries = min(c.max_train_queries, shape.n_users * c.label_items)
    examples = queries * per_query * width * 4 * 3
    pools = queries * c.per_source * len(c.sources) * 40
    transient = (
        sources
        + max((n.transient for n in needs), default=0)
        + examples
        + pools
        + CANDIDATE_CHUNK_BYTES
    )
    return MemoryNeed(
        "ranked",
        sources + store,
        transient,
        f"sources {', '.join(c.sources)} twice, {c.max_train_queries:,} training queries",
        f'fewer queries: --params \'{{"ranked": {{"max_train_queries": '
        f"{max(10, c.max_train_queries // 4)}}}}}' or fewer sources",
    )
