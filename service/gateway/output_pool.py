"""A bounded thread pool for renders and exports: CPU work off the event loop and never in the engine's path.

At most ``render_workers`` jobs run and ``render_queue`` wait; one more is refused at once with 503 + Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fastapi import Request

from service.config import LimitSettings
from service.errors import Unavailable

T = TypeVar("T")


class OutputPool:
    def __init__(self, workers: int, queue: int, retry_after_s: float) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pose3d-render")
        self._capacity = workers + queue
        self._admitted = 0
        self._retry_after_s = retry_after_s

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a pool thread; 503 when the pool and its queue are full."""
        if self._admitted >= self._capacity:
            raise Unavailable("the render/export pool is busy; retry shortly", retry_after_s=self._retry_after_s)
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        finally:
            self._admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def output_pool(request: Request) -> OutputPool:
    """The app's pool, made on first use from the app's limits."""
    pool: OutputPool | None = getattr(request.app.state, "output_pool", None)
    if pool is None:
        limits: LimitSettings = request.app.state.settings.limits
        pool = OutputPool(limits.render_workers, limits.render_queue, limits.retry_after_s)
        request.app.state.output_pool = pool
    return pool
