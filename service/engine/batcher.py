"""A generic dynamic batcher: jobs with futures and deadlines, a bounded queue, a worker thread for compute.

It knows nothing of HTTP, gRPC or Redis. One :class:`DynamicBatcher` serves one stage: a batch closes at
``max_batch_size`` units (``size_of`` an item) or ``max_delay_ms`` after its first job, and runs in an executor
thread. The thread takes the batch off the queue when it starts it, not when it closes, so stages sharing a thread
(detector, CA-PF tokens, lifters) batch what queued while it ran the others' batches. Jobs past their deadline are
dropped before compute (:class:`~service.errors.DeadlineExceeded`), work past ``max_queue`` is refused at once
(:class:`~service.errors.OverCapacity`); the measured rate (:class:`~service.engine.admission.ServiceRate`) feeds the
engine's door. A failing batch is retried item by item, so one poisoned item fails only its own caller. Every time is
read from ``clock`` (injectable: tests run on a fake one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from service.engine.admission import RunningBatch, ServiceRate, check_count, expected_wait
from service.errors import DeadlineExceeded, InternalError, OverCapacity, Pose3DError, Unavailable
from service.metrics import Metrics

if TYPE_CHECKING:
    from service.config import EngineSettings

In = TypeVar("In")
Out = TypeVar("Out")

log = logging.getLogger(__name__)

BatchFn = Callable[[Sequence[In]], Sequence[Out]]
Clock = Callable[[], float]


@dataclass(eq=False)  # compared by identity
class _Job(Generic[In, Out]):
    item: In
    size: int
    deadline: float | None
    future: asyncio.Future[Out]
    queued_at: float


@dataclass(frozen=True)
class BatcherLimits:
    """Knobs of one batcher: ``max_batch_size`` units per batch, ``max_delay_ms`` after the first job,
    ``max_queue`` units waiting before :class:`OverCapacity` (an empty queue admits one caller's work of any size),
    ``retry_after_s`` suggested to refused callers while no service rate is measured, ``rate_window_s`` (seconds
    of batches the measured rate averages over)."""

    max_batch_size: int = 32
    max_delay_ms: float = 5.0
    max_queue: int = 1024
    retry_after_s: float = 1.0
    rate_window_s: float = 2.0

    @classmethod
    def of_engine(cls, engine: EngineSettings, max_batch_size: int, max_delay_ms: float) -> BatcherLimits:
        """A stage's limits: its batch size and delay, the engine's queue bound and rate window."""
        return cls(max_batch_size, max_delay_ms, engine.max_queue, rate_window_s=engine.rate_window_s)


class DynamicBatcher(Generic[In, Out]):
    """Batches items of one stage across callers; create inside a running event loop's lifetime.

    ``stage`` labels its metrics; ``fn``, run in ``executor`` (``None``: the loop's default), maps items to outputs
    of the same length and order; ``size_of`` is the units an item counts for (default 1). ``clock``
    (``time.monotonic``; a test replaces it before the first submit) is the clock of every deadline.
    """

    def __init__(
        self,
        stage: str,
        fn: BatchFn[In, Out],
        limits: BatcherLimits,
        *,
        executor: Executor | None = None,
        metrics: Metrics | None = None,
        size_of: Callable[[In], int] | None = None,
    ) -> None:
        self.stage = stage
        self._fn = fn
        self.limits = limits
        self._executor = executor
        self._metrics = metrics
        self._size_of = size_of
        self._queue: deque[_Job[In, Out]] = deque()
        self._queued_units = 0
        self._lock = threading.Lock()  # the queue: filled on the loop, taken by the thread that runs the batch
        self._taken: list[_Job[In, Out]] = []  # the batch the thread took last (settled on the loop)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.clock: Clock = time.monotonic
        self.rate = ServiceRate(limits.rate_window_s)
        self._running: RunningBatch | None = None
        self.batches_run = 0
        self.units_run = 0

    @property
    def queued_units(self) -> int:
        """Units (people/windows) waiting, not yet in a running batch."""
        return self._queued_units

    def expected_wait_s(self, units: int = 1) -> float | None:
        """Seconds until ``units`` more, queued now, would be computed, the batch they join included (the measured
        rate; ``None`` before it)."""
        lim = self.limits
        return expected_wait(self.rate, self._queued_units, units, self._running, self.clock(), lim.max_batch_size)

    def compute_s(self, units: int) -> float | None:
        """Seconds of compute ``units`` cost here, at the measured rate (``None`` before it), nothing queued."""
        spu = self.rate.seconds_per_unit
        return None if spu is None else units * spu

    async def submit(self, item: In, deadline: float | None = None) -> Out:
        """Queue one item and wait for its output; ``deadline`` (an instant of :attr:`clock`): the item is dropped if
        its batch starts later (refused at once if it has already passed).

        Raises:
            OverCapacity: the queue holds ``max_queue`` units (503 + Retry-After from the measured drain rate).
            DeadlineExceeded: the deadline passed before compute.
            Unavailable: the batcher is closed. Pose3DError/InternalError: this item's own failure.
        """
        return (await self.submit_many([item], deadline))[0]

    async def submit_many(self, items: Sequence[In], deadline: float | None = None) -> list[Out]:
        """Queue several items of one caller (all or none are admitted) and wait for all outputs, in order.

        Fails fast: the first failing item's error is raised and the caller's other queued items are cancelled.
        """
        if not items:
            return []
        jobs = self._enqueue(items, deadline)
        try:
            await asyncio.wait([job.future for job in jobs], return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for job in jobs:
                if not job.future.done():
                    job.future.cancel()
        for job in jobs:
            if not job.future.cancelled() and (error := job.future.exception()) is not None:
                raise error
        return [job.future.result() for job in jobs]

    def start(self) -> None:
        """Start the batching task (also done lazily by the first submit)."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.stage}")

    async def aclose(self) -> None:
        """Stop batching; queued jobs fail with :class:`Unavailable`."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with self._lock:  # a batch is either still queued or noted as taken (see _take_batch)
            left, taken = [self._pop() for _ in range(len(self._queue))], self._taken
        _fail_pending([*taken, *left], Unavailable, f"{self.stage}: engine is shutting down")

    def _enqueue(self, items: Sequence[In], deadline: float | None) -> list[_Job[In, Out]]:
        if self._closed:
            raise Unavailable(f"{self.stage}: engine is shutting down")
        sizes = [max(1, self._size_of(item)) if self._size_of else 1 for item in items]
        now = self.clock()
        self._admit(sum(sizes), deadline, now)
        self.start()
        loop = asyncio.get_running_loop()
        jobs = [
            _Job[In, Out](item, size, deadline, loop.create_future(), now)
            for item, size in zip(items, sizes, strict=True)
        ]
        with self._lock:
            self._queue.extend(jobs)
            self._queued_units += sum(sizes)
        if self._metrics:
            self._metrics.queue_depth.inc(sum(sizes))
        self._wakeup.set()
        return jobs

    def _admit(self, units: int, deadline: float | None, now: float) -> None:
        """Raise unless ``units`` of one caller may be queued now: the deadline has not passed, and the queue bound
        (an empty queue admits one caller's work of any size, else it could never run)."""
        if deadline is not None and now > deadline:
            self._count_rejection("deadline")
            raise DeadlineExceeded(f"deadline passed before {self.stage} was reached")
        lim = self.limits
        queued = self._queued_units
        refusal = check_count(self.stage, self.rate, lim.max_queue, queued, units, lim.retry_after_s)
        if refusal is not None:
            self._count_rejection(refusal.reason)
            raise OverCapacity(refusal.detail, retry_after_s=refusal.retry_after_s)

    def _pop(self) -> _Job[In, Out]:
        job = self._queue.popleft()
        self._queued_units -= job.size
        if self._metrics:
            self._metrics.queue_depth.dec(job.size)
        return job

    def _count_rejection(self, reason: str) -> None:
        if self._metrics:
            self._metrics.rejected_total.labels(reason=reason).inc()

    async def _wait_for_batch(self) -> None:
        """Return when the queue holds a full batch or its first job has waited ``max_delay_ms``."""
        while not self._queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        close_at = self._queue[0].queued_at + self.limits.max_delay_ms / 1000.0
        while self._queued_units < self.limits.max_batch_size:
            remaining = close_at - self.clock()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    def _take_batch(self, now: float) -> list[_Job[In, Out]]:
        """On the thread about to run it: the queue's first ``max_batch_size`` units (jobs their callers left are
        skipped), noted as :attr:`_taken` under the queue's lock, so that :meth:`aclose` finds every job in one place
        or the other."""
        batch: list[_Job[In, Out]] = []
        units = 0
        with self._lock:
            while self._queue and (not batch or units + self._queue[0].size <= self.limits.max_batch_size):
                job = self._pop()
                if not job.future.done():  # else cancelled by its caller
                    batch.append(job)
                    units += job.size
            self._taken = batch
        if self._metrics:
            for job in batch:
                self._metrics.queue_duration.observe(now - job.queued_at)
        return batch

    async def _run(self) -> None:
        while True:
            await self._wait_for_batch()
            try:
                await self._process()
            except asyncio.CancelledError:  # aclose() while the batch ran: its callers must not wait forever
                _fail_pending(self._taken, Unavailable, f"{self.stage}: engine is shutting down")
                raise
            except Exception as e:  # a fault of the batcher itself fails this batch, never the whole stage
                log.exception("%s: batch of %d failed outside the batch function", self.stage, len(self._taken))
                _fail_pending(self._taken, InternalError, f"{self.stage} failed: {type(e).__name__}: {e}")
            # the loop would otherwise keep the last batch's items and outputs (images, tensors) alive while idle
            self._taken = []

    async def _process(self) -> None:
        """Compute one batch (taken by its thread) and settle every job's future (a result, or its own error)."""
        started = self.clock()
        try:
            batch, live, outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._compute)
            for job in batch:
                if job not in live and not job.future.done():
                    self._drop_late(job)
            if isinstance(outputs, Exception):
                log.info("%s batch of %d failed (%r); retrying its items one by one", self.stage, len(live), outputs)
                await self._run_one_by_one(live)
            else:
                for job, out in zip(live, outputs, strict=True):
                    if not job.future.done():
                        job.future.set_result(out)
        finally:
            running, self._running = self._running, None
        done = self.clock()
        if live:
            units = sum(job.size for job in live)
            self.batches_run += 1
            self.units_run += units
            if running is not None and not isinstance(outputs, Exception):  # a batch run whole
                self.rate.observe(units, done - running.started)
            if self._metrics:
                self._metrics.batch_size.labels(stage=self.stage).observe(units)
                self._metrics.stage_duration.labels(stage=self.stage).observe(done - started)
                if (rate := self.rate.units_per_s) is not None:
                    self._metrics.stage_rate.labels(stage=self.stage).set(rate)

    def _compute(self) -> tuple[list[_Job[In, Out]], list[_Job[In, Out]], Sequence[Out] | Exception]:
        """In the worker thread: take the batch (what is queued now) and run the batch function on its jobs whose
        deadline has not passed (running from now: the stage's rate is its compute, not its wait for a shared
        thread); the batch taken, the jobs computed and their outputs (or the batch function's error)."""
        now = self.clock()
        batch = self._take_batch(now)
        live = [j for j in batch if j.deadline is None or now <= j.deadline]
        if not live:
            return batch, live, []
        self._running = RunningBatch(sum(job.size for job in live), now)
        try:
            return batch, live, self._call([job.item for job in live])
        except Exception as e:
            return batch, live, e

    def _drop_late(self, job: _Job[In, Out]) -> None:
        self._count_rejection("deadline")
        job.future.set_exception(DeadlineExceeded(f"deadline passed before {self.stage} started"))

    def _call(self, items: list[In]) -> Sequence[Out]:
        outputs = self._fn(items)
        if len(outputs) != len(items):
            raise InternalError(f"{self.stage}: batch function returned {len(outputs)} outputs for {len(items)} items")
        return outputs

    async def _run_one_by_one(self, batch: list[_Job[In, Out]]) -> None:
        """Retry each job of a failed batch alone. A job's caller may leave (cancel its future) at any await here,
        e.g. ``submit_many`` giving up its other items after the first one failed: such jobs are skipped."""
        loop = asyncio.get_running_loop()
        for job in batch:
            if job.future.done():
                continue
            if job.deadline is not None and self.clock() > job.deadline:
                self._drop_late(job)
                continue
            try:
                (out,) = await loop.run_in_executor(self._executor, self._call, [job.item])
            except Pose3DError as e:
                self._count_rejection(e.type_slug)
                _settle_error(job.future, e)
            except Exception as e:
                error = InternalError(f"{self.stage} failed for this item: {type(e).__name__}: {e}")
                error.__cause__ = e
                self._count_rejection("internal")
                _settle_error(job.future, error)
            else:
                if not job.future.done():
                    job.future.set_result(out)


def _settle_error(future: asyncio.Future[Any], error: BaseException) -> None:
    """Fail ``future`` unless its caller already left (cancelled it) or it is already settled."""
    if not future.done():
        future.set_exception(error)


def _fail_pending(batch: Sequence[_Job[Any, Any]], error: type[Pose3DError], detail: str) -> None:
    """Fail every job of ``batch`` not yet settled, each with its own ``error(detail)``."""
    for job in batch:
        _settle_error(job.future, error(detail))
