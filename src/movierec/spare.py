"""The spare core: a lone request's native kernels split with the idle second core.

A quiet server scores a lone request's row on the event loop (``RowBatcher``'s quiet path)
while the machine's other core idles. Inside :func:`spare_core`, a native thread of
:mod:`movierec._kernels` spins, and the kernels that split by rows share them with it,
chunk by chunk:

- the candidate sources' top-k (:func:`movierec.models.topk.top_indices`),
- the pool's item features (:meth:`~movierec.ranking.features.FeatureStore.item_features_into`),
- the compiled trees (:class:`movierec.ranking.learner.Learned`).

A chunk starts at once: no wake-up of an idle core (tens of microseconds on a virtual
machine, as much as half a kernel saves, which is why Python helper threads did not pay).
Each row is computed by the same code either way, so the answers are the same. Outside the
block, or while the thread is not spinning yet, the kernels run whole in the caller.

On the service benchmark's home (ml-latest-small, ``ranked``), a lone request with fresh
feedback, in-process server, wrk with one connection, 16 alternating rounds: p50 1.79 ->
1.67 ms.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import movierec._kernels as _kernels

#: How long the spare core spins for a row at most (a lone row takes 1-3 ms).
SPIN_US = 10_000

_LOCAL = threading.local()


@contextlib.contextmanager
def spare_core() -> Iterator[None]:
    """Within the block, this thread's splittable kernels share their rows with a spare core.

    For work that knows the other core is idle (one row on a quiet server); the spare core
    spins from entry until exit (at most :data:`SPIN_US`).
    """
    _kernels.spare_wake(SPIN_US)
    _LOCAL.on = True
    try:
        yield
    finally:
        _LOCAL.on = False
        _kernels.spare_rest()


def spare() -> bool:
    """Whether this thread is inside :func:`spare_core`."""
    return bool(getattr(_LOCAL, "on", False))
