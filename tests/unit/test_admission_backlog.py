"""Admission's estimate of the whole engine's backlog, on a fake clock (no wall time): the batcher's rate is its
compute, not its wait for a shared thread; Little's law over admitted work is the door's estimate once measured,
even before anything is queued and whatever the per-stage sum says; its rate counts every request of a batch done
at once and no idle time; a ticket never finished (a dropped request) still leaves the backlog."""

from __future__ import annotations

import asyncio
import gc
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from service.engine.admission import Backlog, check_path
from service.engine.batcher import BatcherLimits, DynamicBatcher
from service.engine.door import Ticket
from service.metrics import Metrics
from tests.unit.test_admission import UNIT_S, Compute, FakeClock, FakeStage, executor, until

__all__ = ["executor"]  # the fixture, shared with test_admission


def test_the_whole_engine_estimate_refuses_even_before_anything_is_queued() -> None:
    empty = FakeStage("detect", 0, 0.1)
    # requests admitted an instant ago are not queued yet: only the backlog sees them
    assert check_path([(empty, 1)], remaining_s=2.0, wait_fraction=0.5, engine_s=None).refusal is None
    verdict = check_path([(empty, 1)], remaining_s=2.0, wait_fraction=0.5, engine_s=1.5)
    assert verdict.refusal is not None
    assert verdict.expected_s == pytest.approx(1.5)
    assert verdict.refusal.retry_after_s == pytest.approx(0.5)
    assert check_path([(empty, 1)], remaining_s=4.0, wait_fraction=0.5, engine_s=1.5).refusal is None


def test_once_measured_the_engines_sojourn_decides_not_the_per_stage_sum() -> None:
    # 29 units queued at 0.1 s each: the per-stage model says 3 s, over the 1 s this request may wait ...
    queued = FakeStage("detect", 29, 0.1)
    cold = check_path([(queued, 1)], remaining_s=2.0, wait_fraction=0.5)
    assert cold.refusal is not None
    assert cold.expected_s == pytest.approx(3.0)
    # ... but the engine measured that what is admitted gets done in 0.5 s (batches share their cost): admitted
    warm = check_path([(queued, 1)], remaining_s=2.0, wait_fraction=0.5, engine_s=0.5)
    assert warm.refusal is None
    assert warm.expected_s == pytest.approx(0.5)
    assert [w.wait_s for w in warm.waits] == [pytest.approx(3.0)]  # the per-stage figure is still reported


def test_backlog_is_littles_law_over_admitted_work() -> None:
    backlog = Backlog(window_s=2.0, min_busy_s=0.05)
    assert backlog.wait_s(1.0) is None  # nothing measured
    for _ in range(8):
        backlog.admit(0.5, now=10.0)
    assert backlog.pending == pytest.approx(4.0)
    backlog.finish(0.5, now=11.0)
    backlog.finish(0.5, now=11.0)  # done in the same instant: both count
    assert backlog.seconds_per_work == pytest.approx(1.0)  # 1 s with work pending, 1 s of work done
    assert backlog.wait_s(0.5) == pytest.approx((3.0 + 0.5) * 1.0)
    backlog.finish(0.5, now=13.0)  # then 2 s for 1 s of work: the average moves towards 2
    backlog.finish(0.5, now=13.0)
    assert 1.5 < (spw := backlog.seconds_per_work or 0.0) < 2.0
    backlog.finish(0.5, now=13.0, done=False)  # failed: off the backlog, no work done
    assert backlog.pending == pytest.approx(1.5)
    assert backlog.seconds_per_work == spw


def test_a_wave_done_at_once_and_an_idle_gap_are_measured_right() -> None:
    backlog = Backlog(window_s=2.0, min_busy_s=0.05)
    for _ in range(8):
        backlog.admit(0.1, now=0.0)
    for _ in range(8):  # one batch of 8 requests, 0.8 s of work in 0.8 s
        backlog.finish(0.1, now=0.8)
    assert backlog.pending == 0.0
    assert backlog.seconds_per_work == pytest.approx(1.0)
    backlog.admit(0.1, now=100.0)  # 99 s with nothing pending: not busy time
    backlog.finish(0.1, now=100.1)
    assert backlog.seconds_per_work == pytest.approx(1.0)


def test_work_the_stages_have_not_measured_yet_is_no_sample() -> None:
    backlog = Backlog(window_s=2.0)
    backlog.admit(0.0, now=0.0)  # cold stages: no compute known
    backlog.finish(0.0, now=1.0)
    assert backlog.seconds_per_work is None


def test_rounding_leaves_the_backlog_idle() -> None:
    backlog = Backlog(window_s=2.0)
    works = [0.1, 0.2, 0.3, 0.07, 0.013]
    for work in works:
        backlog.admit(work, now=0.0)
    for i, work in enumerate(works):
        backlog.finish(work, now=1.0 + i)
    assert backlog.pending == 0.0


def test_a_ticket_adds_its_work_and_takes_it_off_when_finished_or_dropped() -> None:
    backlog, metrics = Backlog(window_s=2.0, min_busy_s=0.0), Metrics()
    ticket = Ticket(0.0, backlog, 0.25)
    assert backlog.pending == pytest.approx(0.25)
    ticket.finish(metrics)
    assert backlog.pending == 0.0
    ticket.finish(metrics)  # once only
    assert backlog.pending == 0.0
    dropped = Ticket(0.0, backlog, 0.5)
    assert backlog.pending == pytest.approx(0.5)
    del dropped  # never finished (its request went away): its work leaves the backlog all the same
    gc.collect()
    assert backlog.pending == 0.0


async def test_a_stage_rate_is_its_compute_not_its_wait_for_a_shared_thread(executor: ThreadPoolExecutor) -> None:
    clock = FakeClock()
    fn = Compute(clock)
    batcher = DynamicBatcher[float, float]("tokens", fn, BatcherLimits(4, 0.0, 100), executor=executor)
    batcher.clock = clock
    sibling = threading.Event()

    def sibling_batch() -> None:  # another stage's batch holds the thread for 5 fake seconds
        sibling.wait(30)
        clock.advance(5.0)

    held = executor.submit(sibling_batch)
    waiting: list[Any] = []
    submit = executor.submit

    def noted(fn: Any, *args: Any) -> Any:
        waiting.append(fn)
        return submit(fn, *args)

    executor.submit = noted  # type: ignore[method-assign,assignment]
    queued = asyncio.ensure_future(batcher.submit_many([1.0] * 4))
    await until(lambda: bool(waiting), "the batch waiting for the thread (it takes the batch when it starts it)")
    assert batcher.queued_units == 4
    assert batcher.expected_wait_s(0) is None  # cold
    sibling.set()
    assert await queued == [2.0] * 4
    held.result()
    assert batcher.rate.seconds_per_unit == pytest.approx(UNIT_S)  # 0.4 s for 4 units, not 5.4 s
    assert batcher.rate.batch_units == 4
    await batcher.aclose()
