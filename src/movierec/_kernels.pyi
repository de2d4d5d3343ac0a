"""Type stubs of the compiled kernels (src/movierec/_kernels.c)."""

from typing import Any

def topk_rows(scores: Any, n: int, m: int, k: int, out: Any, /) -> None:
    """K best columns per row of float32 ``scores`` into int64 ``out``, best first."""

def csr_product(
    n_q: int,
    n_out: int,
    xp: Any,
    xi: Any,
    xd: Any,
    mp: Any,
    mi: Any,
    md: Any,
    out: Any,
    wide: bool,
    dbl: bool,
    /,
) -> None:
    """``out += x @ m`` for two CSR matrices given by their arrays (dense, zeroed ``out``)."""

def count_le(item_start: Any, times: Any, items: Any, t: Any, out: Any, /) -> None:
    """Per (item, time): position after the item's last logged event at or before the time."""
