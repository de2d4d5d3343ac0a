"""Type stubs of the compiled kernels (src/movierec/_kernels.c)."""

from typing import Any

def topk_rows(scores: Any, n: int, m: int, k: int, out: Any, split: bool = False, /) -> bool:
    """K best columns per row of float32 ``scores`` into int64 ``out``, best first.

    ``split``: the second half of the rows goes to the spare core when it spins (then True).
    """

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
    skip_zero: bool,
    /,
) -> None:
    """``out += x @ m`` for two CSR matrices given by their arrays (dense, zeroed ``out``).

    ``skip_zero``: ``m`` holds no inf or NaN, so the zero entries of ``x`` are skipped.
    """

def count_le(item_start: Any, times: Any, items: Any, t: Any, out: Any, /) -> None:
    """Per (item, time): position after the item's last logged event at or before the time."""

def item_features(
    item_start: Any,
    times: Any,
    cum_rating: Any,
    cum_decay: Any,
    years: Any,
    n_genres: Any,
    t_ref: float,
    windows: Any,
    items: Any,
    as_of: Any,
    out: Any,
    n_cols: int,
    dest: Any,
    split: bool = False,
    /,
) -> bool:
    """The item features of (item, time) pairs into columns ``dest`` of float32 ``out``.

    ``split``: chunks of pairs shared with the spare core when it spins (then True).
    """

def cross_features(
    rows: Any,
    items: Any,
    taste: Any,
    n_genres: int,
    g_indptr: Any,
    g_indices: Any,
    g_wide: bool,
    latest: Any,
    n_latest: int,
    n_last: Any,
    s_indptr: Any,
    s_indices: Any,
    s_wide: bool,
    s_data: Any,
    pop: Any,
    user_pop: Any,
    years: Any,
    user_year: Any,
    out: Any,
    n_cols: int,
    dest: Any,
    /,
) -> None:
    """Genre, similarity and gap features of (query, item) pairs into columns of ``out``."""

def source_features(
    bounds: Any,
    scores: Any,
    ranks: Any,
    proposed: Any,
    n_sources: int,
    where: Any,
    out: Any,
    n_cols: int,
    dest: Any,
    /,
) -> None:
    """Each source's score, rank and z of the pairs, and the proposers' count, into ``out``."""

def time_ranks(indptr: Any, times: Any, cols: Any, out: Any, /) -> None:
    """Per event of CSR rows, its recency rank in its row (0 = latest) into float64 ``out``.

    ``cols`` (int64) given: the strict rank, ties of time by the larger column first;
    ``None``: the dense rank (equal times share one).
    """

def merge_proposals(
    prop: Any,
    stacked: Any,
    n_src: int,
    n_q: int,
    kk: int,
    n_items: int,
    per_source: float,
    rows: Any,
    items: Any,
    scores: Any,
    ranks: Any,
    proposed: Any,
    /,
) -> int:
    """The candidate pool of each query's proposals into the given arrays; returns its size."""

def spare_wake(us: int, /) -> bool:
    """The spare core spins for the next ``us`` microseconds (its thread started if need be)."""

def spare_rest() -> None:
    """The spare core stops spinning (its thread sleeps until the next wake)."""

def trees_split(entry: int, data: Any, out: Any, n: int, nf: int, /) -> bool:
    """Compiled trees' predictions of ``n`` float64 rows of ``nf`` features into ``out``.

    The second half of the rows goes to the spare core when it spins (then True).
    """
