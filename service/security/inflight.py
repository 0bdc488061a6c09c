"""One bound on requests in progress for the whole gateway process, whichever transport they came by, and the
engine's door asked before a request's body is read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from service.engine.admission import Refusal
from service.errors import OverCapacity, Overloaded

Probe = Callable[[bool, float | None], Refusal | None]
"""``(images, timeout_s) -> refusal``: the engine's door on the cheapest request of a kind
(:func:`service.engine.door.probe`)."""


class InFlight:
    """Counts work in progress (REST ``/v1/`` requests, gRPC ``Estimate`` calls) against one ``limit``.

    ``probe`` (set while an engine runs in this process; ``None`` over remote workers, whose own door decides) lets
    :meth:`acquire` refuse an estimate from its headers alone when the engine would refuse even the cheapest request
    of its kind: a refusal under overload then costs no body parsing, no validation and no decoding."""

    def __init__(self, limit: int, retry_after_s: float) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.count = 0
        self.probe: Probe | None = None

    def check(self, images: bool | None = None, timeout_s: float | None = None) -> None:
        """Raise :class:`Overloaded` (429 / RESOURCE_EXHAUSTED) when no slot is free, :class:`OverCapacity` (503)
        when ``images`` is given (an estimate of images, else of keypoints, with ``timeout_s`` to its deadline,
        ``None``: the server's) and the probe refuses it."""
        if self.count >= self.limit:
            raise Overloaded(f"{self.count} requests in flight; retry shortly", retry_after_s=self.retry_after_s)
        if images is not None and self.probe is not None and (refusal := self.probe(images, timeout_s)) is not None:
            raise OverCapacity(refusal.detail, retry_after_s=refusal.retry_after_s)

    def acquire(self) -> None:
        """Take one slot (:class:`Overloaded` when none is free)."""
        self.check()
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
