"""Admission by expected time, on a fake clock: measured rates, refusal past the deadline, Retry-After from the
drain rate, agreement with the batcher's expiry drop, cold start."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from service.engine.admission import RunningBatch, ServiceRate, check_count, check_path, expected_wait
from service.engine.batcher import BatcherLimits, DynamicBatcher
from service.errors import DeadlineExceeded, OverCapacity, Overloaded
from service.metrics import Metrics

UNIT_S = 0.1  # fake compute seconds per unit


class FakeClock:
    """A monotonic clock that moves only when told to (thread-safe)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class Compute:
    """A batch function that costs ``UNIT_S`` fake seconds per item; ``gate`` holds it (work queues meanwhile)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[list[float]] = []
        self.entered = 0  # batches that reached the thread (before the gate)

    def __call__(self, items: Sequence[float]) -> list[float]:
        self.entered += 1
        self.gate.wait(30)
        self.clock.advance(UNIT_S * len(items))
        self.batches.append(list(items))
        return [2 * x for x in items]


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1, thread_name_prefix="infer")
    yield pool
    pool.shutdown()


def batcher_on(
    clock: FakeClock, executor: ThreadPoolExecutor, max_queue: int = 1000, metrics: Metrics | None = None
) -> tuple[DynamicBatcher[float, float], Compute]:
    fn = Compute(clock)
    limits = BatcherLimits(4, 0.0, max_queue, retry_after_s=0.75)
    batcher = DynamicBatcher[float, float]("detect", fn, limits, executor=executor, metrics=metrics)
    batcher.clock = clock
    return batcher, fn


async def until(condition: object, what: str) -> None:
    """Yield to the loop (and the executor thread) until ``condition()`` holds."""
    for _ in range(10_000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never: {what}")


# ---- the estimates themselves


def test_rate_is_units_per_busy_second_averaged_over_its_window() -> None:
    rate = ServiceRate(window_s=2.0)
    assert rate.seconds_per_unit is None  # cold
    assert rate.units_per_s is None
    rate.observe(4, busy_s=0.4)  # the first batch sets it
    assert rate.seconds_per_unit == pytest.approx(0.1)
    assert rate.units_per_s == pytest.approx(10.0)
    rate.observe(2, busy_s=0.2)  # the same cost: unchanged
    assert rate.seconds_per_unit == pytest.approx(0.1)
    rate.observe(1, busy_s=2.0)  # a slower batch moves the average by 1 - exp(-2 / 2) of the way
    assert rate.seconds_per_unit == pytest.approx(0.1 + (1 - math.exp(-1.0)) * 1.9)
    before = rate.seconds_per_unit
    rate.observe(0, busy_s=1.0)
    rate.observe(3, busy_s=0.0)
    assert rate.seconds_per_unit == before  # empty or untimed batches say nothing


def test_expected_wait_grows_with_the_queue_and_counts_the_running_batch() -> None:
    rate = ServiceRate(2.0)
    rate.observe(4, 0.4)
    assert expected_wait(rate, 0, 1, None, now=0.0) == pytest.approx(0.1)
    assert expected_wait(rate, 8, 1, None, now=0.0) == pytest.approx(0.9)
    assert expected_wait(rate, 16, 1, None, now=0.0) == pytest.approx(1.7)  # +0.1 s per unit ahead
    running = RunningBatch(units=4, started=10.0)  # a 0.4 s batch, 0.1 s old: 0.3 s left
    assert expected_wait(rate, 0, 1, running, now=10.1) == pytest.approx(0.3 + 0.1)
    assert expected_wait(rate, 0, 1, running, now=99.0) == pytest.approx(0.1)  # overdue: nothing left
    assert expected_wait(ServiceRate(2.0), 100, 1, running, now=10.1) is None  # cold


@dataclass
class FakeStage:
    stage: str
    queued_units: int
    per_unit_s: float | None

    def expected_wait_s(self, units: int = 1) -> float | None:
        return None if self.per_unit_s is None else (self.queued_units + units) * self.per_unit_s

    def compute_s(self, units: int) -> float | None:
        return None if self.per_unit_s is None else units * self.per_unit_s


def test_a_request_is_refused_when_its_path_would_keep_it_past_its_deadline() -> None:
    detect, lift = FakeStage("detect", 30, 0.2), FakeStage("lift", 0, 0.01)
    refusal, waits, _ = check_path([(detect, 1), (lift, 1)], remaining_s=10.0, wait_fraction=0.5)
    assert refusal is not None
    assert refusal.reason == "expected-wait"
    assert [w.wait_s for w in waits] == pytest.approx([6.2, 0.01])
    # the waits add up (one stage after the other); Retry-After: the queues must drain 6.21 - 5 s before the same
    # request fits in half its deadline
    assert refusal.retry_after_s == pytest.approx(6.21 - 5.0)
    assert "longest queue at detect" in refusal.detail
    admitted, _, _ = check_path([(detect, 1), (lift, 1)], remaining_s=20.0, wait_fraction=0.5)
    assert admitted is None


def test_retry_after_is_proportional_to_the_work_queued_ahead() -> None:
    retry = {}
    for queued in (50, 100, 200):
        refusal, _, _ = check_path([(FakeStage("detect", queued, 0.1), 1)], remaining_s=4.0, wait_fraction=1.0)
        assert refusal is not None
        retry[queued] = refusal.retry_after_s
    assert retry[50] == pytest.approx((50 + 1) * 0.1 - 4.0)
    assert retry[200] - retry[100] == pytest.approx(2 * (retry[100] - retry[50]))  # 0.1 s per unit: the drain rate


def test_empty_queues_admit_any_size_and_cold_stages_add_no_wait() -> None:
    empty = FakeStage("lift", 0, 1.0)
    assert check_path([(empty, 20_000)], remaining_s=1.0, wait_fraction=0.5)[0] is None  # idle: even 20 000 s
    cold = FakeStage("lift", 500, None)  # no batch timed yet: only the count bound holds
    assert check_path([(cold, 1)], remaining_s=0.001, wait_fraction=0.5)[0] is None
    assert check_path([(cold, 1), (FakeStage("detect", 0, 0.1), 1)], 1.0, 0.5)[0] is None


def test_count_bound_retry_after_is_the_time_to_drain_the_excess() -> None:
    rate = ServiceRate(2.0)
    assert check_count("lift", rate, 8, 0, 50, 0.75) is None  # an empty queue takes any size
    cold = check_count("lift", rate, 8, 8, 2, 0.75)
    assert cold is not None
    assert cold.reason == "overloaded"
    assert cold.retry_after_s == 0.75  # before a rate is measured
    rate.observe(4, 0.4)
    warm = check_count("lift", rate, 8, 8, 2, 0.75)
    assert warm is not None
    assert warm.retry_after_s == pytest.approx(2 * 0.1)  # 2 units over, 0.1 s each


# ---- in the batcher, on a fake clock


async def test_the_batcher_measures_its_rate_from_the_batches_it_runs(executor: ThreadPoolExecutor) -> None:
    clock, metrics = FakeClock(), Metrics()
    batcher, fn = batcher_on(clock, executor, metrics=metrics)
    assert batcher.expected_wait_s() is None  # cold start
    assert await batcher.submit_many([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    assert [len(b) for b in fn.batches] == [4, 2]
    assert batcher.rate.seconds_per_unit == pytest.approx(UNIT_S)
    assert metrics.registry.get_sample_value(
        "pose3d_stage_rate_units_per_second", {"stage": "detect"}
    ) == pytest.approx(1 / UNIT_S)
    # 3 units, and those that will still join their batch: up to the recent mean batch size (4 then 2 units)
    assert 3 < (mean := batcher.rate.batch_units or 0) < 4
    assert batcher.expected_wait_s(3) == pytest.approx(mean * UNIT_S)
    assert batcher.expected_wait_s(4) == pytest.approx(4 * UNIT_S)  # a full batch: nobody joins it
    assert batcher.expected_wait_s(5) == pytest.approx((4 + mean) * UNIT_S)  # a second batch, filled in turn
    await batcher.aclose()


async def test_queue_full_is_503_with_retry_after_from_the_drain_rate(executor: ThreadPoolExecutor) -> None:
    clock = FakeClock()
    batcher, fn = batcher_on(clock, executor, max_queue=6)
    await batcher.submit(1.0)  # measures 0.1 s per unit
    fn.gate.clear()
    running = asyncio.ensure_future(batcher.submit_many([1.0] * 4))
    await until(lambda: fn.entered == 2, "the second batch in the thread")
    queued = asyncio.ensure_future(batcher.submit_many([1.0] * 6))
    await until(lambda: batcher.queued_units == 6, "queued")
    with pytest.raises(OverCapacity) as info:
        await batcher.submit_many([1.0] * 3)
    assert isinstance(info.value, Overloaded)
    assert info.value.status == 503
    assert info.value.retry_after_s == pytest.approx(3 * UNIT_S)  # 3 units over the bound, at the measured rate
    fn.gate.set()
    assert len(await running) == 4
    assert len(await queued) == 6
    await batcher.aclose()


async def test_admission_is_safe_against_the_expiry_drop(executor: ThreadPoolExecutor) -> None:
    """Work the batcher would drop as expired, the estimate refuses; work it admits runs. The estimate counts the
    units that may still join the last batch (up to the recent batch size), so it errs on the side of refusing."""
    clock = FakeClock()
    batcher, fn = batcher_on(clock, executor)
    await batcher.submit_many([1.0] * 4)  # measured: 0.1 s per unit, batches of 4
    fn.gate.clear()
    ahead = asyncio.ensure_future(batcher.submit_many([1.0] * 4))  # in flight (held)
    await until(lambda: fn.entered == 2, "the second batch in the thread")
    behind = asyncio.ensure_future(batcher.submit_many([1.0] * 12))  # queued: 1.2 s of compute
    await until(lambda: batcher.queued_units == 12, "queued")
    wait = batcher.expected_wait_s(1)
    assert wait is not None
    assert wait == pytest.approx(0.4 + 1.3 + 0.3)  # the running batch, the 12 queued, this unit, 3 joining it
    late_deadline, ok_deadline = clock() + 1.5, clock() + wait + 0.05  # the 13th unit's batch starts at +1.6 s
    refusal, _, _ = check_path([(batcher, 1)], late_deadline - clock(), 1.0)
    assert refusal is not None
    assert refusal.retry_after_s == pytest.approx(wait - 1.5)
    assert check_path([(batcher, 1)], ok_deadline - clock(), 1.0)[0] is None
    # bypassing admission: the refused one is dropped before compute, the admitted one is computed
    late = asyncio.ensure_future(batcher.submit(5.0, deadline=late_deadline))
    ok = asyncio.ensure_future(batcher.submit(7.0, deadline=ok_deadline))
    await until(lambda: batcher.queued_units == 14, "both queued")
    fn.gate.set()
    assert len(await ahead) == 4
    assert len(await behind) == 12
    with pytest.raises(DeadlineExceeded):
        await late
    assert await ok == 14.0
    await batcher.aclose()


async def test_work_whose_deadline_already_passed_is_refused_at_once(executor: ThreadPoolExecutor) -> None:
    clock = FakeClock()
    batcher, fn = batcher_on(clock, executor)
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(1.0, deadline=clock() - 0.001)
    assert fn.batches == []  # never queued
    await batcher.aclose()
