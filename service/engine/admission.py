"""Admission by expected time: each stage's measured cost, the engine's backlog, and whether a request may enter.

Every batching stage measures its compute cost from the batches it actually runs (:class:`ServiceRate`: seconds per
unit while its batch function ran, and units per batch, exponentially weighted over the last ``window_s`` seconds);
a request's *work* is the compute of its units along its path at those costs. The door (:func:`check_path`) judges
a request by the time it would spend in the engine: while admitted work is pending, the whole engine's backlog
(:class:`Backlog`: Little's law — the work admitted and not yet done, times the real seconds the engine has taken
per second of work lately), which sees everything a request will wait for: the queues of every stage, requests
admitted an instant ago and not queued yet, the thread the detector, CA-PF tokens and lifters share, the event
loop's hops, other processes on the cores. Before the backlog has measured a rate (a cold start), the sum of the
per-stage waits (:func:`expected_wait`: what is left of the running batch, the units queued ahead and its own at
the measured cost, plus the units that will still join the batch it ends in) stands in. When the estimate exceeds
``wait_fraction`` of the remaining deadline the request is refused at once (:class:`Refusal`, 503) with a
Retry-After of the time the engine needs to drain enough to admit it; the rest of the deadline absorbs the
estimate's spread. Work once admitted is never refused for time further down (that would waste the stages it
already used); the batchers still drop work whose deadline passed before its batch starts, which the admission rule
makes the exception. Only the count bound (``max_queue`` units per stage, a memory bound that always applies)
holds before any stage has run a batch, and a request that finds the engine idle (no queue on its path, no admitted
work pending) is admitted whatever its size (a long sequence on an idle service).

Why the backlog and not the per-stage sum once both exist (docs/overload.md, "Fourth pass"): the per-stage sum
misses the thread the stages share and charges a lone request the whole batch it would start, so it needed a
scale learnt from real times (2-3.5 at the shipped defaults) that over-charged exactly the requests that keep the
detector's batches full; Little's law is measured on the real sojourn and needs no scale.

Pure bookkeeping: no asyncio, no clock of its own (times are passed in), no transport.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

AdmissionMode = Literal["time", "count"]


class ServiceRate:
    """A stage's measured drain rate: compute seconds per unit, and units per batch.

    Each batch contributes ``units`` over the time its batch function ran on its thread (from when the thread took
    it until its outputs were back): the stage's own cost. What a unit waits besides — the units queued ahead, the
    batch it will join — is counted by :func:`expected_wait` from the queue as it is, and the waits for a thread
    shared with other stages by the engine's :class:`Backlog`, so that a stage whose batches wait behind a
    sibling's is not taken for a slow one.

    Args:
        window_s: the average's memory in seconds of compute: a batch of ``d`` seconds moves it by
            ``1 - exp(-d / window_s)`` of the way to its own seconds per unit (and batch size), so small and large
            batches weigh what they cost and the estimate follows a change of load within a few ``window_s``.
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
class InFlight:
    """The batch a stage has taken: ``units`` in it, ``started`` (clock seconds) when its compute began (``None``
    while it waits for its thread)."""

    units: int
    started: float | None


def expected_wait(
    rate: ServiceRate, queued: int, own: int, in_flight: InFlight | None, now: float, max_batch: int | None = None
) -> float | None:
    """Seconds until ``own`` more units queued behind ``queued`` would be done, at clock ``now``: what is left of
    the running batch (its expected duration less its age, at least 0) plus ``(queued + own)`` units at the
    measured rate, plus — given the stage's ``max_batch`` — the units that will still join the batch ``own`` ends
    in before it starts (up to the recent mean batch size: work that arrives later but is computed with it);
    ``None`` while ``rate`` has measured nothing."""
    spu = rate.seconds_per_unit
    if spu is None:
        return None
    left = 0.0
    if in_flight is not None:
        age = now - in_flight.started if in_flight.started is not None else 0.0
        left = max(0.0, in_flight.units * spu - age)
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
    """What admission reads of a stage (a :class:`~service.engine.batcher.DynamicBatcher`): its queue, its wait
    and the compute of ``units`` there (``compute_s``: ``None`` while cold)."""

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

    Each admitted request brings ``work``: its own compute along its path (seconds at the stages' measured costs,
    nothing queued). :attr:`pending` sums the work of the requests admitted and not yet done;
    :attr:`seconds_per_work` is the real time the engine had work pending per second of work it got done, both
    exponentially weighted over the last ``window_s`` seconds of such time (time with nothing pending is not
    counted; requests done in the same instant all count). :meth:`wait_s` is then what a request admitted now would
    spend in the engine (its sojourn, by Little's law), whatever makes it so: requests admitted in the same instant
    and not queued yet, work still upstream of a stage, the thread the stages share, the event loop's hops, cores
    shared with other processes. It is the door's estimate once measured (:func:`check_path`'s ``engine_s``).
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
        """Seconds a request bringing ``own`` work, admitted now, is expected to spend in the engine (``None``
        before a rate is measured)."""
        spw = self.seconds_per_work
        return None if spw is None else (self.pending + own) * spw


class PathCheck(NamedTuple):
    """The door's verdict on one request: ``refusal`` (``None``: admitted), the per-stage ``waits`` and
    ``expected_s``, what the request is expected to spend queued and computed in the engine."""

    refusal: Refusal | None
    waits: list[PathWait]
    expected_s: float


def check_path(
    path: Sequence[tuple[Stage, int]], remaining_s: float, wait_fraction: float, engine_s: float | None = None
) -> PathCheck:
    """Admit a request whose ``path`` is ``(stage, units)`` pairs and whose deadline is ``remaining_s`` away, or not.

    The estimate is ``engine_s`` — the whole engine's, :meth:`Backlog.wait_s`, given while admitted work is pending
    and a rate is measured — else the sum of the path's per-stage waits. Refused when the engine is busy (``engine_s``
    is given, or some stage of the path has work queued) and the estimate exceeds ``wait_fraction`` of
    ``remaining_s``; the Retry-After is the excess over that share (the time the engine needs to drain enough)."""
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
