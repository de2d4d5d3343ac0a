"""A least-recently-used cache bounded in bytes (answers of one engine)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from movierec.service.metrics import CACHE_BYTES, CACHE_EVICTIONS

V = TypeVar("V")
#: Bytes an entry costs beyond its payload (key tuple, dict slot, object headers).
ENTRY_OVERHEAD = 160


class ByteLRU(Generic[V]):
    """LRU map whose payload sizes (plus a fixed overhead each) stay under ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._data: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> V | None:
        """The value of ``key`` (now the most recently used) or None."""
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            self._data.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: V, size: int) -> None:
        """Store a value of ``size`` payload bytes, evicting the least recently used first."""
        cost = size + ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            before = self.bytes - (old[1] if old else 0)
            evicted = 0
            while self._data and before + cost > self.max_bytes:
                _, (_, c) = self._data.popitem(last=False)
                before -= c
                evicted += 1
            self._data[key] = (value, cost)
            delta = before + cost - self.bytes
            self.bytes = before + cost
            self.evictions += evicted
        CACHE_BYTES.inc(delta)
        if evicted:
            CACHE_EVICTIONS.inc(evicted)

    def clear(self) -> None:
        """Drop everything (the engine is being replaced)."""
        with self._lock:
            freed = self.bytes
            self._data.clear()
            self.bytes = 0
        CACHE_BYTES.dec(freed)
