"""Row keys: integer codes for key columns, and the sortedness check that makes dedup cheap."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def strictly_increasing_pairs(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether rows ``(a[i], b[i])`` are strictly increasing (sorted, no repeated pair).

    MovieLens files are sorted by (user, movie), so this O(n) check usually lets dedup and
    CSR construction skip a sort.
    """
    if a.shape[0] < 2:
        return True
    da = a[1:] > a[:-1]
    if bool(da.all()):
        return True
    same = a[1:] == a[:-1]
    return bool(np.all(da | (same & (b[1:] > b[:-1]))))


def pair_codes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """int64 code ``a << 32 | b`` of two non-negative int32 columns (order preserving)."""
    return (a.astype(np.int64) << 32) | b.astype(np.int64)


def key_codes(table: pa.Table, keys: tuple[str, ...]) -> np.ndarray:
    """Return an int64 code per row that is equal exactly when the key columns are equal.

    Two integer id columns give an order-preserving code; other keys are factorised.
    """
    if len(keys) == 2 and all(pa.types.is_integer(table.schema.field(k).type) for k in keys):
        return pair_codes(table[keys[0]].to_numpy(), table[keys[1]].to_numpy())
    if len(keys) == 1 and pa.types.is_integer(table.schema.field(keys[0]).type):
        return table[keys[0]].to_numpy().astype(np.int64)
    frame = table.select(list(keys)).to_pandas()
    return frame.groupby(list(keys), sort=False, dropna=False).ngroup().to_numpy(np.int64)
