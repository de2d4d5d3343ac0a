"""Bounded work per request: expensive answers run off the event loop, a few at a time.

``/health``, ``/ready`` and cached answers stay on the event loop and stay fast; anything that
scores (per-request fold-in, explanations, cold start, batches) runs in worker threads behind
one capacity limiter. When every slot is busy and ``queue`` requests already wait, a new one
is refused at once with 503 and ``Retry-After`` instead of piling up.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread
from fastapi import HTTPException

from movierec.service.metrics import SATURATED

P = ParamSpec("P")
T = TypeVar("T")


class WorkLimiter:
    """At most ``slots`` expensive computations at once and ``queue`` waiting for a slot."""

    def __init__(self, slots: int, queue: int, retry_after_s: int = 1) -> None:
        self.slots = slots
        self.queue = queue
        self.retry_after_s = retry_after_s
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The capacity limiter (created in the running event loop on first use)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.slots)
        return self._limiter

    def _check(self) -> anyio.CapacityLimiter:
        """The limiter, or 503 + Retry-After when every slot is busy and the queue is full."""
        lim = self.limiter
        if lim.available_tokens < 1 and lim.statistics().tasks_waiting >= self.queue:
            SATURATED.inc()
            raise HTTPException(
                503,
                detail=f"busy: {self.slots} expensive requests running and {self.queue} "
                "waiting; retry shortly",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        return lim

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in a worker thread under the limit; 503 + Retry-After when saturated."""
        lim = self._check()
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=lim)

    def alone(self) -> bool:
        """Whether one computation holds a slot (the caller's) and none waits for one."""
        lim = self.limiter
        held = lim.borrowed_tokens  # (compared below as a count: not a secret)
        return held == 1 and lim.statistics().tasks_waiting == 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot while the event loop awaits work done elsewhere (the scoring thread).

        The same limit as :meth:`run`: 503 + Retry-After when saturated. A free slot is taken
        at once (no pass through the event loop, which ``async with`` a limiter makes:
        a tenth of a per-request answer's time on the loop); otherwise the request waits in
        line for one.
        """
        lim = self._check()
        try:
            lim.acquire_nowait()
        except anyio.WouldBlock:
            await lim.acquire()
        try:
            yield
        finally:
            lim.release()
