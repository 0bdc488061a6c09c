"""One bound on requests in progress for the whole gateway process, whichever transport they came by."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import Overloaded


class InFlight:
    """Counts work in progress (REST ``/v1/`` requests, gRPC ``Estimate`` calls) against one ``limit``."""

    def __init__(self, limit: int, retry_after_s: float) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.count = 0

    def acquire(self) -> None:
        """Take one slot; :class:`Overloaded` (429 / RESOURCE_EXHAUSTED) when none is free."""
        if self.count >= self.limit:
            raise Overloaded(f"{self.count} requests in flight; retry shortly", retry_after_s=self.retry_after_s)
        self.count += 1

    def release(self) -> None:
        self.count -= 1

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the ``with`` body (see :meth:`acquire`)."""
        self.acquire()
        try:
            yield
        finally:
            self.release()
