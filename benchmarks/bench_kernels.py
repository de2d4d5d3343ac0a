"""The compiled kernels against SciPy's sparse product, in the same run.

    python benchmarks/bench_kernels.py   # writes benchmarks/results/kernels.json

Random CSR histories (165 items a row) against a 9,724 × 9,724 neighbour matrix (100 a row),
ml-latest-small's shape; 1, 8 and 512 rows; medians of 20 calls. Also checks the two agree to
the bit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from movierec.types import csr_product_dense


def _ms(f: Callable[[], object], n: int = 20) -> float:
    f()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def main() -> None:
    """Time both products for 1, 8 and 512 rows and write the JSON."""
    n_items = 9_724
    m = sp.random(n_items, n_items, density=100 / n_items, format="csr", random_state=2)
    m = sp.csr_matrix(m, dtype=np.float32)
    out: dict[str, dict[str, float | bool]] = {}
    for n_q in (1, 8, 512):
        x = sp.csr_matrix(
            sp.random(n_q, n_items, density=165 / n_items, format="csr", random_state=1),
            dtype=np.float32,
        )

        def with_scipy(x: sp.csr_matrix = x) -> object:
            return (x @ m).toarray()

        def with_kernel(x: sp.csr_matrix = x) -> object:
            return csr_product_dense(x, m)

        scipy_ms, ours_ms = _ms(with_scipy), _ms(with_kernel)
        same = bool(np.array_equal((x @ m).toarray(), csr_product_dense(x, m)))
        out[f"rows_{n_q}"] = {
            "scipy_ms": scipy_ms,
            "kernel_ms": ours_ms,
            "speedup": scipy_ms / ours_ms,
            "bit_identical": same,
        }
        print(
            f"{n_q:>4} rows: scipy {scipy_ms:.3f} ms, kernel {ours_ms:.3f} ms "
            f"({scipy_ms / ours_ms:.1f}x), identical: {same}"
        )
    path = Path("benchmarks/results/kernels.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": "csr_product", **out}, indent=2))


if __name__ == "__main__":
    main()
