"""How saved models store their arrays: the training history and ``model.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp


def history_arrays(history: sp.csr_matrix, ts: sp.csr_matrix | None) -> dict[str, np.ndarray]:
    """The arrays that store a training history (values and, when known, times)."""
    out = {
        "history_indptr": history.indptr,
        "history_indices": history.indices,
        "history_data": history.data,
    }
    if ts is not None:
        out["history_ts"] = ts.data
    return out


def history_from(
    arrays: Mapping[str, np.ndarray], shape: tuple[int, int]
) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
    """The history (values, times) stored by :func:`history_arrays`."""
    idx, ptr = arrays["history_indices"], arrays["history_indptr"]
    values = sp.csr_matrix((arrays["history_data"], idx, ptr), shape=shape)
    ts = (
        sp.csr_matrix((arrays["history_ts"], idx, ptr), shape=shape)
        if "history_ts" in arrays
        else None
    )
    return values, ts


def read_meta(folder: Path) -> dict[str, Any]:
    """The ``model.json`` of a saved model (its name, config and shape)."""
    meta: dict[str, Any] = json.loads((folder / "model.json").read_text())
    return meta
