"""Admission by expected time: each stage's measured cost, the engine's backlog, and whether a request may enter.

A request's *work* is the compute of its units along its path at the stages' measured costs (:class:`ServiceRate`).
The door (:func:`check_path`) refuses a request at once (:class:`Refusal`, 503 + Retry-After) when the time it would
spend in the engine exceeds ``wait_fraction`` of its remaining deadline. That time is the whole engine's backlog by
Little's law (:class:`Backlog`) while admitted work is pending, which sees every wait (all stages' queues, the
thread they share, the event loop, other processes); on a cold start, the sum of the per-stage waits
(:func:`expected_wait`). Admitted work is never refused for time further down; the count bound (``max_queue``) always
applies, and a request finding the engine idle is admitted whatever its size. Why Little's law and not the
per-stage sum: docs/overload.md, "Fourth pass".

Pure bookkeeping: no asyncio, no clock of its own (times are passed in), no transport.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol


class ServiceRate:
    """A stage's measured cost: compute seconds per unit, and units per batch, from the batches it ran.

    Only the time a batch function ran counts (the queue ahead is :func:`expected_wait`'s, a shared thread the
    :class:`Backlog`'s), so a stage waiting behind a sibling's batches is not taken for a slow one.

    Args:
        window_s: the average's memory in seconds of compute: a batch of ``d`` seconds moves it by
            ``1 - exp(-d / window_s)`` of the way to its own values, so batches weigh what they cost.
    """

    def __init__(self, window_s: float) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self.seconds_per_unit: float | None = None
        """Busy seconds per unit; ``None`` until the first batch has been timed."""
        self.batch_units: float | None = None
        """Units per batch, averaged the same way: how full the batch a new unit joins will be."""

    def observe(self, units: int, busy_s: float) -> None:
        """One batch of ``units`` kept the stage busy for ``busy_s`` seconds (ignored unless both are positive)."""
        if units <= 0 or not 0 < busy_s < math.inf:
            return
        per_unit = busy_s / units
        if self.seconds_per_unit is None or self.batch_units is None:
            self.seconds_per_unit, self.batch_units = per_unit, float(units)
            return
        weight = 1.0 - math.exp(-busy_s / self.window_s)
        self.seconds_per_unit += weight * (per_unit - self.seconds_per_unit)
        self.batch_units += weight * (units - self.batch_units)

    @property
    def units_per_s(self) -> float | None:
        """The measured drain rate (units/s); ``None`` before the first batch."""
        return 1.0 / self.seconds_per_unit if self.seconds_per_unit else None


@dataclass(frozen=True)
class RunningBatch:
    """The batch a stage runs: ``units`` in it, ``started`` (clock seconds) when its compute began."""

    units: int
    started: float


def expected_wait(
    rate: ServiceRate, queued: int, own: int, running: RunningBatch | None, now: float, max_batch: int | None = None
) -> float | None:
    """Seconds until ``own`` units queued behind ``queued`` would be done, at clock ``now``: what is left of the
    running batch, ``queued + own`` units at the measured rate, and the units that will still join the last batch
    before it starts (up to the mean batch size, capped by ``max_batch``); ``None`` while ``rate`` is cold."""
    spu = rate.seconds_per_unit
    if spu is None:
        return None
    left = 0.0 if running is None else max(0.0, running.units * spu - (now - running.started))
    ahead = queued + own
    joining = 0.0
    if max_batch is not None and rate.batch_units is not None and ahead > 0:
        in_last = ahead - max_batch * ((ahead - 1) // max_batch)  # units of the batch ``own`` ends in, so far
        joining = max(0.0, min(rate.batch_units, max_batch) - in_last)
    return left + (ahead + joining) * spu


@dataclass(frozen=True)
class Refusal:
    """Why work was not admitted: ``reason`` (a ``pose3d_rejected_total`` label), a sentence, and the seconds
    after which the same work would be admitted if nothing else arrived meanwhile."""

    reason: Literal["expected-wait", "overloaded"]
    detail: str
    retry_after_s: float


def check_count(
    stage: str, rate: ServiceRate, max_queue: int, queued: int, own: int, fallback_s: float
) -> Refusal | None:
    """The memory bound of one stage: ``own`` units may join ``queued`` ones up to ``max_queue`` (an empty queue
    admits any size). Retry-After: the time to drain the excess at the measured rate (``fallback_s`` before it)."""
    if queued == 0 or queued + own <= max_queue:
        return None
    over = queued + own - max_queue
    spu = rate.seconds_per_unit
    return Refusal(
        "overloaded",
        f"over capacity: the {stage} queue is full ({queued} of {max_queue} units queued, {own} more asked)",
        over * spu if spu is not None else fallback_s,
    )


class Stage(Protocol):
    """What admission reads of a stage (a :class:`~service.engine.batcher.DynamicBatcher`)."""

    stage: str

    @property
    def queued_units(self) -> int: ...

    def expected_wait_s(self, units: int = 1) -> float | None: ...

    def compute_s(self, units: int) -> float | None: ...


@dataclass(frozen=True)
class PathWait:
    """A request's expected wait at one stage of its path (``None``: the stage has measured nothing yet)."""

    stage: str
    units: int
    wait_s: float | None


class Backlog:
    """Little's law over the whole engine: the work admitted and not yet done, and how fast admitted work gets done.

    Each admitted request brings ``work``, its own compute along its path (seconds at the stages' measured costs).
    :attr:`seconds_per_work` is the real time with work pending per second of work done, exponentially weighted over
    the last ``window_s`` seconds of such time (idle time is not counted); :meth:`wait_s` is then a new request's
    sojourn in the engine, whatever makes it so. It is the door's estimate once measured (``engine_s``).
    """

    def __init__(self, window_s: float, min_busy_s: float = 0.05) -> None:
        self.window_s, self.min_busy_s = window_s, min_busy_s
        self.pending = 0.0
        """Work (seconds of compute) admitted and not yet done."""
        self._busy = 0.0  # weighted seconds with work pending
        self._done = 0.0  # weighted work done meanwhile
        self._last: float | None = None

    def _advance(self, now: float) -> None:
        """Account the time since the last event: busy (and ageing the sums) only while work was pending."""
        if self._last is not None and self.pending > 0.0:
            elapsed = max(0.0, now - self._last)
            decay = math.exp(-elapsed / self.window_s)
            self._busy = self._busy * decay + elapsed
            self._done *= decay
        self._last = now

    def admit(self, work: float, now: float) -> None:
        """A request bringing ``work`` seconds of compute was admitted at clock ``now``."""
        self._advance(now)
        self.pending += work

    def finish(self, work: float, now: float, done: bool = True) -> None:
        """A request admitted with ``work`` left the engine at ``now``: ``done`` (its work was computed) or not (it
        failed or was dropped: its work is only taken off :attr:`pending`)."""
        self._advance(now)
        self.pending -= work
        if self.pending <= 1e-9 * max(1.0, work):  # what is left is rounding: the engine is idle
            self.pending = 0.0
        if done:
            self._done += work

    @property
    def seconds_per_work(self) -> float | None:
        """Real seconds with work pending per second of work done; ``None`` until ``min_busy_s`` of it is seen."""
        if self._busy < self.min_busy_s or self._done <= 0.0:
            return None
        return self._busy / self._done

    def wait_s(self, own: float) -> float | None:
        """Seconds a request bringing ``own`` work, admitted now, is expected to spend in the engine; ``None`` while
        nothing is pending (the per-stage queues tell then) or before a rate is measured."""
        spw = self.seconds_per_work
        return None if spw is None or self.pending <= 0.0 else (self.pending + own) * spw


class PathCheck(NamedTuple):
    """The door's verdict: ``refusal`` (``None``: admitted), the per-stage ``waits``, and ``expected_s`` in the
    engine."""

    refusal: Refusal | None
    waits: list[PathWait]
    expected_s: float


def check_path(
    path: Sequence[tuple[Stage, int]], remaining_s: float, wait_fraction: float, engine_s: float | None = None
) -> PathCheck:
    """Admit a request whose ``path`` is ``(stage, units)`` pairs and whose deadline is ``remaining_s`` away, or not.

    The estimate is ``engine_s`` (:meth:`Backlog.wait_s`, given while admitted work is pending), else the sum of the
    per-stage waits. Refused when the engine is busy (``engine_s`` given, or a stage of the path has a queue) and
    the estimate exceeds ``wait_fraction`` of ``remaining_s``; Retry-After is the excess over that share."""
    waits = [PathWait(s.stage, units, s.expected_wait_s(units)) for s, units in path]
    total = engine_s if engine_s is not None else sum(w.wait_s for w in waits if w.wait_s is not None)
    if engine_s is None and not any(s.queued_units for s, _ in path):
        return PathCheck(None, waits, total)
    allowed = wait_fraction * max(remaining_s, 0.0)
    if total <= allowed:
        return PathCheck(None, waits, total)
    slowest = max(waits, key=lambda w: w.wait_s or 0.0)
    source = "the whole engine's backlog" if engine_s is not None else "the stages' queues"
    detail = (
        f"over capacity: the work admitted ahead would keep this request {total:.2f} s in the engine ({source}; "
        f"longest queue at {slowest.stage}: {slowest.wait_s or 0.0:.3g} s); it may wait {allowed:.2f} s "
        f"({wait_fraction:g} of its deadline, {max(remaining_s, 0.0):.3g} s away)"
    )
    return PathCheck(Refusal("expected-wait", detail, total - allowed), waits, total)
