"""Memory a model needs to be fitted, known before it starts, and the check that refuses early.

Every strategy states what it needs from the shape of the data alone (users, items,
interactions): what stays *resident* once fitted (its arrays, kept until the bundle is
written) and the *transient* peak of its fit on top of that. A training run needs the data
plus every model's resident part plus the largest transient part; when that is more than
the memory available, it stops before fitting anything and says which strategy does not fit,
how much it would need, and the setting that makes it fit. The figures are upper bounds
calibrated against measured peaks (``tests/models/test_memory.py`` checks that a real fit
stays under its estimate).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from movierec.resources import (
    GB,
    InsufficientMemoryError,
    available_bytes,
    fmt_bytes,
    parse_memory,
)

__all__ = [
    "GB",
    "DataShape",
    "InsufficientMemoryError",
    "MemoryNeed",
    "available_bytes",
    "check_fits",
    "check_memory",
    "fmt_bytes",
    "largest_square",
    "parse_memory",
]


@dataclass(frozen=True)
class DataShape:
    """What memory estimates need to know about a data set."""

    n_users: int
    n_items: int
    nnz: int

    @property
    def matrix_bytes(self) -> int:
        """One CSR copy of the interactions (float32 values, int32 indices, int64 pointers)."""
        return self.nnz * 8 + (self.n_users + 1) * 8


@dataclass(frozen=True)
class MemoryNeed:
    """One strategy's memory: resident once fitted, transient peak while fitting.

    Attributes:
        strategy: Strategy name.
        resident: Bytes kept after the fit.
        transient: Extra bytes at the fit's peak.
        detail: What the bytes are (shown when a run is refused).
        fix: The setting that shrinks it, when there is one.
    """

    strategy: str
    resident: int
    transient: int
    detail: str = ""
    fix: str = ""

    @property
    def peak(self) -> int:
        """Resident plus transient."""
        return self.resident + self.transient


def run_need(needs: list[MemoryNeed], data_bytes: int) -> int:
    """Bytes a run fitting ``needs`` one after another needs (models stay until published)."""
    if not needs:
        return data_bytes
    return data_bytes + sum(n.resident for n in needs) + max(n.transient for n in needs)


def check_memory(
    needs: list[MemoryNeed], shape: DataShape, available: int | None = None, what: str = "training"
) -> int:
    """Raise :class:`InsufficientMemoryError` when ``needs`` cannot fit; return bytes needed.

    The data itself is counted as four copies of the interaction matrix (the frame it was
    built from, the matrix, its timestamps and the weighted copy every fit makes).
    """
    avail = available_bytes() if available is None else available
    data_bytes = 4 * shape.matrix_bytes
    total = run_need(needs, data_bytes)
    if total <= avail:
        return total
    lines = [
        f"{what} would need about {fmt_bytes(total)} and {fmt_bytes(avail)} is available "
        f"({shape.n_users:,} users, {shape.n_items:,} items, {shape.nnz:,} interactions); "
        "nothing was fitted."
    ]
    for n in sorted(needs, key=lambda n: -n.peak):
        alone = data_bytes + n.peak
        verdict = "does not fit on its own" if alone > avail else "fits on its own"
        line = f"  {n.strategy}: {fmt_bytes(n.peak)} ({n.detail}; {verdict})"
        if n.fix:
            line += f"; {n.fix}"
        lines.append(line)
    lines.append(
        "Drop the largest strategies (--strategies ...), apply the settings above, "
        "or run on a machine with more memory."
    )
    raise InsufficientMemoryError("\n".join(lines))


def largest_square(budget_bytes: float, copies: int, itemsize: int = 4) -> int:
    """Largest ``n`` with ``copies`` dense ``n × n`` arrays within ``budget_bytes``."""
    if budget_bytes <= 0:
        return 0
    return math.isqrt(int(budget_bytes // (copies * itemsize)))


class Fittable(Protocol):
    """Anything that states its memory need (every :class:`~movierec.models.base.Recommender`)."""

    def memory_need(self, shape: DataShape, budget: int) -> MemoryNeed:
        """See :meth:`movierec.models.base.Recommender.memory_need`."""
        ...


def check_fits(
    models: Iterable[Fittable],
    shape: DataShape,
    *,
    together: bool = True,
    what: str = "training",
    available: int | None = None,
) -> int:
    """Refuse before fitting when ``models`` cannot fit; returns the bytes needed.

    ``together``: the models are fitted one after another and all kept (a training run);
    otherwise each is fitted and dropped in turn (an evaluation).
    """
    avail = available_bytes() if available is None else available
    budget = avail - 4 * shape.matrix_bytes
    needs = [m.memory_need(shape, budget) for m in models]
    if together:
        return check_memory(needs, shape, avail, what)
    return max((check_memory([n], shape, avail, what) for n in needs), default=0)
