"""Admission by expected time: each stage's measured service rate, and whether a request may enter the engine.

Every batching stage measures its drain rate from the batches it actually runs (:class:`ServiceRate`: units per
second of the time it was busy, exponentially weighted over the last ``window_s`` seconds — waits for a thread it
shares with other stages included: the detector, CA-PF tokens and the lifters share one inference thread). The wait
of ``own`` units behind ``queued`` ones is what is left of the running batch plus ``(queued + own)`` units at that
rate (:func:`expected_wait`). A request is admitted or refused once, at the engine's door (:func:`check_path`): it
waits at each stage of its path in turn, so its expected waits there are summed (a later stage's wait is chiefly
its batch waiting for the running batch of a stage it shares the inference thread with, which its measured rate
carries); when the sum exceeds ``wait_fraction`` of the remaining deadline the request is refused at once
(:class:`Refusal`, 503) with a Retry-After of the time the queues need to drain enough to admit it; the rest of the
deadline absorbs the estimate's error. Work once admitted is never refused for time further down (that would waste the stages it
already used); the batchers still drop work whose deadline passed before its batch starts, which the admission
rule makes the exception. Before a stage has run a batch (cold start) it adds no wait, so only the count bound
(``max_queue`` units per stage, a memory bound that always applies) holds; a request that finds every queue on its
path empty is admitted whatever its size (a long sequence on an idle service).

The model behind those sums is simple, and how far it is off depends on the batch settings, on the threads the
stages share and on what else runs on the machine (work queued at decode that will later need the detector, a
large detector batch the lifter's waits behind, an event loop competing for the same cores). So the door
**calibrates** it against what really happened (:class:`WaitCalibration`): every admitted request that found a
queue reports, when it is done, the time it really spent in the engine; the summed estimate is scaled by a high
quantile of the recent ratios of real to expected time before it is compared with the deadline. The admission
rule then holds at any batch settings and under load, not only at the ones it was tuned at.

Pure bookkeeping: no asyncio, no clock of its own (times are passed in), no transport.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

AdmissionMode = Literal["time", "count"]


class ServiceRate:
    """A stage's measured drain rate: seconds per unit of the time the stage was busy.

    Each batch contributes ``units`` over its busy interval: from when its oldest job was queued, or when the
    previous batch finished if later, until its outputs are back — compute, waiting for a thread shared with other
    stages, and the batch delay included, so the rate is the one at which the stage's queue really drains (a stage
    whose small batches each wait behind a sibling's large one drains slowly, however cheap its compute).

    Args:
        window_s: the average's memory in seconds of busy time: a batch busy for ``d`` seconds moves it by
            ``1 - exp(-d / window_s)`` of the way to its own seconds per unit, so small and large batches weigh what
            they cost and the estimate follows a change of load within a few ``window_s``.
    """

    def __init__(self, window_s: float) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self.seconds_per_unit: float | None = None
        """Busy seconds per unit; ``None`` until the first batch has been timed."""

    def observe(self, units: int, busy_s: float) -> None:
        """One batch of ``units`` kept the stage busy for ``busy_s`` seconds (ignored unless both are positive)."""
        if units <= 0 or not 0 < busy_s < math.inf:
            return
        per_unit = busy_s / units
        if self.seconds_per_unit is None:
            self.seconds_per_unit = per_unit
            return
        weight = 1.0 - math.exp(-busy_s / self.window_s)
        self.seconds_per_unit += weight * (per_unit - self.seconds_per_unit)

    @property
    def units_per_s(self) -> float | None:
        """The measured drain rate (units/s); ``None`` before the first batch."""
        return 1.0 / self.seconds_per_unit if self.seconds_per_unit else None


@dataclass(frozen=True)
class InFlight:
    """The batch a stage is running: ``units`` in it, ``started`` (clock seconds) when it left the queue."""

    units: int
    started: float


def expected_wait(rate: ServiceRate, queued: int, own: int, in_flight: InFlight | None, now: float) -> float | None:
    """Seconds until ``own`` more units queued behind ``queued`` would be done, at clock ``now``: what is left of
    the running batch (its expected duration less its age, at least 0) plus ``(queued + own)`` units at the
    measured rate; ``None`` while ``rate`` has measured nothing."""
    spu = rate.seconds_per_unit
    if spu is None:
        return None
    left = max(0.0, in_flight.units * spu - (now - in_flight.started)) if in_flight is not None else 0.0
    return left + (queued + own) * spu


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


@dataclass(frozen=True)
class PathWait:
    """A request's expected wait at one stage of its path (``None``: the stage has measured nothing yet)."""

    stage: str
    units: int
    wait_s: float | None


class WaitCalibration:
    """How far the summed per-stage estimate is off: a high quantile of real ÷ expected engine time of recent
    admitted requests.

    Only requests whose expected time was at least ``min_expected_s`` count (below that, fixed costs — a batch's
    delay, hops between threads — dominate the ratio and say nothing of the queue model); the last ``samples``
    of them are kept. :attr:`factor` is their ``quantile`` (1.0 until ``min_samples`` are in), clamped to
    ``[low, high]`` so that one pathological request cannot close or open the door by itself.
    """

    def __init__(
        self, samples: int = 200, quantile: float = 0.9, min_expected_s: float = 0.05, min_samples: int = 8
    ) -> None:
        self.quantile = quantile
        self.min_expected_s = min_expected_s
        self.min_samples = min_samples
        self.low, self.high = 0.5, 20.0
        self._ratios: deque[float] = deque(maxlen=samples)
        self.factor = 1.0
        """The current scale applied to expected waits."""

    def observe(self, expected_s: float, real_s: float) -> None:
        """A request expected to take ``expected_s`` seconds in the engine took ``real_s`` (ignored when it was
        expected to be quick, see the class docstring)."""
        if expected_s < self.min_expected_s or not 0 <= real_s < math.inf:
            return
        self._ratios.append(real_s / expected_s)
        if len(self._ratios) >= self.min_samples:
            ordered = sorted(self._ratios)
            at = ordered[min(len(ordered) - 1, int(self.quantile * len(ordered)))]
            self.factor = min(self.high, max(self.low, at))


class PathCheck(NamedTuple):
    """The door's verdict on one request: ``refusal`` (``None``: admitted), the per-stage ``waits`` and their
    calibrated sum ``expected_s`` (what the request is expected to spend queued and computed in the engine)."""

    refusal: Refusal | None
    waits: list[PathWait]
    expected_s: float


def check_path(
    path: Sequence[tuple[Stage, int]], remaining_s: float, wait_fraction: float, scale: float = 1.0
) -> PathCheck:
    """Admit a request whose ``path`` is ``(stage, units)`` pairs and whose deadline is ``remaining_s`` away, or not.

    Refused when some stage of the path has work queued and the expected waits of its stages, summed and scaled by
    ``scale`` (:attr:`WaitCalibration.factor`), exceed ``wait_fraction`` of ``remaining_s``; the Retry-After is the
    excess over that share (the time the queues need to drain enough)."""
    waits = [PathWait(s.stage, units, s.expected_wait_s(units)) for s, units in path]
    total = scale * sum(w.wait_s for w in waits if w.wait_s is not None)
    if not any(s.queued_units for s, _ in path):
        return PathCheck(None, waits, total)
    allowed = wait_fraction * max(remaining_s, 0.0)
    if total <= allowed:
        return PathCheck(None, waits, total)
    slowest = max(waits, key=lambda w: w.wait_s or 0.0)
    detail = (
        f"over capacity: the work queued ahead would keep this request {total:.3g} s (longest at {slowest.stage}: "
        f"{slowest.wait_s or 0.0:.3g} s, estimates scaled by {scale:.2f} from recent requests); it may wait "
        f"{allowed:.3g} s ({wait_fraction:g} of its deadline, {max(remaining_s, 0.0):.3g} s away)"
    )
    return PathCheck(Refusal("expected-wait", detail, total - allowed), waits, total)
