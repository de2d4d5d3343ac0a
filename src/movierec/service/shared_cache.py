"""Rendered answers shared by every API worker and process through Redis (optional).

One Redis hash per (bundle version, user): ``movierec:answer:<version>:<user index>`` whose
fields are ``<strategy>:<k>`` and values the rendered JSON. A reload changes the version, so
old answers are never read again (they expire after ``MOVIEREC_REDIS_TTL_S``); feedback
through the API and events folded in from the stream delete the user's hash. Redis being
down costs speed, never an answer: errors are logged (once a minute) and the request computes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger(__name__)


class SharedAnswers:
    """A Redis-backed layer under each worker's own byte-bounded cache."""

    def __init__(self, url: str, ttl_s: int) -> None:
        import redis

        self.client: Any = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.ttl_s = ttl_s
        self._warned = 0.0

    @staticmethod
    def name(version: str, user_idx: int) -> str:
        """The hash of one user's answers under one bundle version."""
        return f"movierec:answer:{version}:{user_idx}"

    def _failed(self, e: Exception) -> None:
        now = time.monotonic()
        if now - self._warned > 60:
            self._warned = now
            logger.warning("shared answer cache unavailable (%s): computing locally", e)

    def get(self, version: str, key: tuple[str, int, int]) -> bytes | None:
        """A shared answer, or ``None``."""
        strategy, idx, k = key
        try:
            value = self.client.hget(self.name(version, idx), f"{strategy}:{k}")
        except Exception as e:
            self._failed(e)
            return None
        return bytes(value) if value is not None else None

    def put(self, version: str, key: tuple[str, int, int], body: bytes) -> None:
        """Share an answer."""
        strategy, idx, k = key
        name = self.name(version, idx)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(name, f"{strategy}:{k}", body)
            pipe.expire(name, self.ttl_s)
            pipe.execute()
        except Exception as e:
            self._failed(e)

    def forget(self, version: str, user_indices: list[int]) -> None:
        """Drop users' shared answers (their history changed)."""
        if not user_indices:
            return
        try:
            self.client.delete(*(self.name(version, i) for i in user_indices))
        except Exception as e:
            self._failed(e)
