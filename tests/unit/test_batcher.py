from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.engine.batcher import BatcherLimits, DynamicBatcher
from service.errors import DeadlineExceeded, InternalError, InvalidInput, Overloaded, Unavailable
from service.metrics import Metrics
from tests.unit.test_admission import until


class Recorder:
    """A batch function that squares numbers, records batch sizes and its thread, can be slowed down."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[float]] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, items: Sequence[float]) -> list[float]:
        self.gate.wait(5)
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(items))
        if self.delay_s:
            time.sleep(self.delay_s)
        for x in items:
            if math.isnan(x):
                raise ValueError("NaN input poisons the whole batch")
            if x < 0:
                raise InvalidInput("negative input")
        return [x * x for x in items]


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1, thread_name_prefix="infer")
    yield pool
    pool.shutdown()


def value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    got = metrics.registry.get_sample_value(name, labels or {})
    return float(got) if got is not None else 0.0


async def test_concurrent_submissions_are_batched_and_results_route_back(executor: ThreadPoolExecutor) -> None:
    fn, metrics = Recorder(), Metrics()
    batcher = DynamicBatcher("lift", fn, BatcherLimits(8, 20.0, 100), executor=executor, metrics=metrics)
    results = await asyncio.gather(*(batcher.submit(float(i)) for i in range(32)))
    assert results == [float(i * i) for i in range(32)]
    assert max(len(b) for b in fn.batches) == 8
    assert batcher.units_run / batcher.batches_run >= 4
    assert fn.threads == {"infer_0"}
    assert value(metrics, "pose3d_batch_size_count", {"stage": "lift"}) == len(fn.batches)
    assert value(metrics, "pose3d_batch_size_sum", {"stage": "lift"}) == 32
    assert value(metrics, "pose3d_queue_depth") == 0
    await batcher.aclose()


async def test_batch_closes_after_max_delay_with_a_partial_batch() -> None:
    fn = Recorder()
    batcher = DynamicBatcher("lift", fn, BatcherLimits(64, 30.0, 100))
    started = time.monotonic()
    assert await batcher.submit(3.0) == 9.0
    assert time.monotonic() - started >= 0.025  # waited for max_delay; no upper bound: the machine may be busy
    assert fn.batches == [[3.0]]
    await batcher.aclose()


async def test_size_of_counts_people_not_requests() -> None:
    batches: list[list[list[int]]] = []

    def people_count(frames: Sequence[list[int]]) -> list[int]:
        batches.append(list(frames))
        return [len(f) for f in frames]

    batcher = DynamicBatcher[list[int], int]("detect", people_count, BatcherLimits(4, 50.0, 100), size_of=len)
    got = await asyncio.gather(*(batcher.submit([1, 2, 3]) for _ in range(3)))
    assert got == [3, 3, 3]
    assert all(sum(len(f) for f in b) <= 4 or len(b) == 1 for b in batches)
    assert len(batches) == 3  # three 3-person frames never share a batch of 4 people
    await batcher.aclose()


async def test_poisoned_item_fails_alone(executor: ThreadPoolExecutor) -> None:
    fn, metrics = Recorder(), Metrics()
    batcher = DynamicBatcher("lift", fn, BatcherLimits(16, 30.0, 100), executor=executor, metrics=metrics)
    inputs = [1.0, float("nan"), 2.0, -1.0, 3.0]
    results = await asyncio.gather(*(batcher.submit(x) for x in inputs), return_exceptions=True)
    assert [results[0], results[2], results[4]] == [1.0, 4.0, 9.0]
    assert isinstance(results[1], InternalError)
    assert "NaN" in str(results[1])
    assert isinstance(results[3], InvalidInput)
    assert value(metrics, "pose3d_rejected_total", {"reason": "internal"}) == 1
    # the worker survives: the next request is fine
    assert await batcher.submit(5.0) == 25.0
    await batcher.aclose()


async def test_deadline_expiry_drops_before_compute_without_affecting_others(executor: ThreadPoolExecutor) -> None:
    fn, metrics = Recorder(), Metrics()
    batcher = DynamicBatcher("lift", fn, BatcherLimits(1, 0.0, 100), executor=executor, metrics=metrics)
    fn.gate.clear()  # hold the worker thread so jobs stay queued
    first = asyncio.ensure_future(batcher.submit(1.0))
    await asyncio.sleep(0.02)
    late = asyncio.ensure_future(batcher.submit(2.0, deadline=time.monotonic() + 0.01))
    ok = asyncio.ensure_future(batcher.submit(3.0, deadline=time.monotonic() + 3600))
    await asyncio.sleep(0.05)
    fn.gate.set()
    assert await first == 1.0
    with pytest.raises(DeadlineExceeded):
        await late
    assert await ok == 9.0
    assert [2.0] not in fn.batches  # never computed
    assert value(metrics, "pose3d_rejected_total", {"reason": "deadline"}) == 1
    await batcher.aclose()


async def test_overload_rejects_new_work_and_keeps_admitted_work(executor: ThreadPoolExecutor) -> None:
    fn, metrics = Recorder(), Metrics()
    batcher = DynamicBatcher(
        "lift", fn, BatcherLimits(2, 0.0, 4, retry_after_s=0.5), executor=executor, metrics=metrics
    )
    fn.gate.clear()
    running = asyncio.ensure_future(batcher.submit(0.0))
    await asyncio.sleep(0.02)  # taken into a batch, blocked in the thread
    admitted = [asyncio.ensure_future(batcher.submit(float(i))) for i in range(1, 5)]
    await asyncio.sleep(0)
    assert batcher.queued_units + 1 > batcher.limits.max_queue
    with pytest.raises(Overloaded) as info:
        await batcher.submit(9.0)
    assert info.value.retry_after_s == 0.5
    with pytest.raises(Overloaded):
        await batcher.submit_many([7.0, 8.0])
    fn.gate.set()
    assert await running == 0.0
    assert [await a for a in admitted] == [1.0, 4.0, 9.0, 16.0]
    assert value(metrics, "pose3d_rejected_total", {"reason": "overloaded"}) == 2
    await batcher.aclose()


async def test_submit_many_returns_in_order_and_fails_fast() -> None:
    batcher = DynamicBatcher("lift", Recorder(), BatcherLimits(3, 1.0, 100))
    assert await batcher.submit_many([1.0, 2.0, 3.0, 4.0]) == [1.0, 4.0, 9.0, 16.0]
    with pytest.raises(InvalidInput):
        await batcher.submit_many([1.0, -2.0])
    await batcher.aclose()


async def test_closed_batcher_is_unavailable() -> None:
    batcher = DynamicBatcher("lift", Recorder(), BatcherLimits())
    assert await batcher.submit(2.0) == 4.0
    await batcher.aclose()
    with pytest.raises(Unavailable):
        await batcher.submit(1.0)


async def test_deadline_passing_while_the_batch_waits_for_the_thread(executor: ThreadPoolExecutor) -> None:
    fn, metrics = Recorder(), Metrics()
    batcher = DynamicBatcher("lift", fn, BatcherLimits(8, 1.0, 100), executor=executor, metrics=metrics)
    gate = threading.Event()
    executor.submit(gate.wait, 5)  # the thread is busy elsewhere; the batch forms and waits for it
    late = asyncio.ensure_future(batcher.submit(2.0, deadline=time.monotonic() + 0.02))
    ok = asyncio.ensure_future(batcher.submit(3.0, deadline=time.monotonic() + 3600))
    await asyncio.sleep(0.1)
    gate.set()
    with pytest.raises(DeadlineExceeded):
        await late
    assert await ok == 9.0
    assert fn.batches == [[3.0]]
    assert value(metrics, "pose3d_rejected_total", {"reason": "deadline"}) == 1
    await batcher.aclose()


async def test_a_poisoned_batch_whose_callers_leave_during_the_retries_does_not_kill_the_stage(
    executor: ThreadPoolExecutor,
) -> None:
    """Every item of a batch fails; the first failure makes the caller of submit_many give up its other items
    while they are retried one by one. The stage must go on serving (it used to die on InvalidStateError,
    leaving every later caller waiting forever)."""
    fn = Recorder(delay_s=0.01)
    batcher = DynamicBatcher("lift", fn, BatcherLimits(8, 20.0, 100), executor=executor)
    with pytest.raises(InternalError):
        await batcher.submit_many([float("nan")] * 4)
    assert await asyncio.wait_for(batcher.submit(5.0), 2.0) == 25.0
    await batcher.aclose()


async def test_closing_during_one_by_one_retries_fails_the_waiting_callers(executor: ThreadPoolExecutor) -> None:
    """aclose() while a failed batch is being retried item by item: its callers get Unavailable, never a hang."""
    retrying, release = threading.Event(), threading.Event()

    def fails_together(items: Sequence[float]) -> list[float]:
        if len(items) > 1:
            raise ValueError("the batch fails as a whole")
        retrying.set()
        release.wait(5)  # the first one-by-one retry holds the thread
        return [x * x for x in items]

    batcher = DynamicBatcher("lift", fails_together, BatcherLimits(8, 20.0, 100), executor=executor)
    callers = [asyncio.ensure_future(batcher.submit(x)) for x in (1.0, 2.0, 3.0)]
    assert await asyncio.to_thread(retrying.wait, 5)
    close = asyncio.ensure_future(batcher.aclose())
    await asyncio.sleep(0.05)
    release.set()
    await close
    done = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 2.0)
    assert all(isinstance(r, Unavailable) for r in done), done


async def test_a_request_larger_than_the_queue_bound_runs_when_the_queue_is_empty() -> None:
    """One caller's work may exceed ``max_queue`` (a stream's tail: every person's window of every remaining
    frame); refusing it would answer 429 forever, however idle the stage. It is admitted into an empty queue."""
    batcher = DynamicBatcher("lift", Recorder(), BatcherLimits(4, 1.0, 8))
    assert await asyncio.wait_for(batcher.submit_many([float(i) for i in range(20)]), 5.0) == [
        float(i * i) for i in range(20)
    ]
    await batcher.aclose()


async def test_the_batch_is_taken_when_its_thread_starts_it(executor: ThreadPoolExecutor) -> None:
    """Stages share the inference thread: what queues while the thread runs another stage's batch joins this
    stage's next batch (taken by the thread when it starts it), up to ``max_batch_size`` — not only what had queued
    when the batch closed. No clock: the thread is held by a gate until all items are queued."""
    fn = Recorder()
    batcher = DynamicBatcher("detect", fn, BatcherLimits(3, 0.0, 100), executor=executor)
    gate = threading.Event()
    submitted: list[object] = []
    submit = executor.submit

    def noted(call: object, *args: object) -> object:
        submitted.append(call)
        return submit(call, *args)  # type: ignore[arg-type]

    executor.submit(gate.wait, 30)  # another stage's batch holds the thread
    executor.submit = noted  # type: ignore[method-assign,assignment]
    first = asyncio.ensure_future(batcher.submit(1.0))
    await until(lambda: bool(submitted), "the first item's batch closed at once (no delay), asking for the thread")
    later = [asyncio.ensure_future(batcher.submit(x)) for x in (2.0, 3.0, 4.0)]
    await until(lambda: batcher.queued_units == 4, "all four queued")
    gate.set()
    assert await asyncio.gather(first, *later) == [1.0, 4.0, 9.0, 16.0]
    assert fn.batches == [[1.0, 2.0, 3.0], [4.0]]  # the queued ones joined the first batch, up to 3 units
    await batcher.aclose()


class _HeldObservation:
    """``queue_duration`` whose ``observe`` — run by the batch's thread once it has taken its batch off the queue —
    says so and waits until released."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def observe(self, amount: float) -> None:
        self.entered.set()
        self.release.wait(5)


async def test_closing_just_as_the_thread_takes_the_batch_fails_its_callers(executor: ThreadPoolExecutor) -> None:
    """aclose() after the thread took the batch off the queue but before it noted it as taken: the batch was in
    neither place aclose looks, and its callers waited for ever (the thread's outputs go to no one)."""
    metrics = Metrics()
    held = _HeldObservation()
    metrics.queue_duration = held  # type: ignore[assignment]
    batcher = DynamicBatcher("lift", Recorder(), BatcherLimits(4, 0.0, 100), executor=executor, metrics=metrics)
    caller = asyncio.ensure_future(batcher.submit(2.0))
    assert await asyncio.to_thread(held.entered.wait, 5)
    await batcher.aclose()
    held.release.set()
    await asyncio.get_running_loop().run_in_executor(executor, lambda: None)  # the batch's thread is done
    for _ in range(10):
        await asyncio.sleep(0)
    assert caller.done(), "the caller of a batch taken as the batcher closed waits for ever"
    caller.cancel()
    with pytest.raises(Unavailable):
        await caller
