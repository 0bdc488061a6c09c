"""Admission by expected time: each stage's measured service rate, and whether a request may enter the engine.

Every batching stage measures, from the batches it actually runs (:class:`ServiceRate`, exponentially weighted
over the last ``window_s`` seconds of batches):

- ``seconds_per_unit``: compute seconds per unit (image, person, window) inside the batch function;
- ``batch_overhead_s``: seconds a batch spends out of its queue but not computing — chiefly waiting for a thread
  it shares with other stages (the detector, CA-PF tokens and the lifters share one inference thread).

The wait of ``own`` units behind ``queued`` ones is then what is left of the running batch plus
``ceil((queued + own) / max_batch_size)`` batches of overhead plus ``(queued + own)`` units of compute
(:func:`expected_wait`). A request is admitted or refused once, at the engine's door (:func:`check_path`): the
expected waits of every stage on its path are summed and, when the sum exceeds ``wait_fraction`` of its remaining
deadline, it is refused at once (:class:`Refusal`, 503) with a Retry-After of the time the queues need to drain
enough to admit it. Work once admitted is never refused for time further down (that would waste the stages it
already used); the batchers still drop work whose deadline passed before its batch starts, which the admission
rule makes the exception. Before a stage has run a batch (cold start) it adds no wait, so only the count bound
(``max_queue`` units per stage, a memory bound that always applies) holds; a request that finds every queue on its
path empty is admitted whatever its size (a long sequence on an idle service).

Pure bookkeeping: no asyncio, no clock of its own (times are passed in), no transport.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

AdmissionMode = Literal["time", "count"]


def _ewma(old: float | None, new: float, weight: float) -> float:
    return new if old is None else old + weight * (new - old)


class ServiceRate:
    """A stage's measured costs: compute seconds per unit and out-of-queue, not-computing seconds per batch.

    Args:
        window_s: the averages' memory in seconds of batches: a batch lasting ``d`` seconds moves them by
            ``1 - exp(-d / window_s)`` of the way to its own figures, so small and large batches weigh what they
            cost and the estimate follows a change of load within a few ``window_s`` of work.
    """

    def __init__(self, window_s: float) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self.seconds_per_unit: float | None = None
        """Compute seconds per unit; ``None`` until the first batch has been timed."""
        self.batch_overhead_s = 0.0
        """Seconds per batch between leaving the queue and its outputs, less the compute (thread waits)."""

    def observe(self, units: int, compute_s: float, total_s: float) -> None:
        """One batch of ``units`` computed for ``compute_s`` and was out of the queue for ``total_s`` seconds
        (ignored unless ``units`` and ``compute_s`` are positive)."""
        if units <= 0 or not 0 < compute_s < math.inf or not math.isfinite(total_s):
            return
        weight = 1.0 - math.exp(-max(compute_s, total_s) / self.window_s)
        first = self.seconds_per_unit is None
        self.seconds_per_unit = _ewma(self.seconds_per_unit, compute_s / units, weight)
        overhead = max(0.0, total_s - compute_s)
        self.batch_overhead_s = overhead if first else _ewma(self.batch_overhead_s, overhead, weight)

    @property
    def units_per_s(self) -> float | None:
        """The measured compute rate (units per second of compute); ``None`` before the first batch."""
        return 1.0 / self.seconds_per_unit if self.seconds_per_unit else None

    def seconds_for(self, units: int, max_batch_size: int) -> float | None:
        """Seconds to run ``units`` in batches of at most ``max_batch_size``; ``None`` before the first batch."""
        if self.seconds_per_unit is None:
            return None
        batches = math.ceil(units / max_batch_size) if units > 0 else 0
        return batches * self.batch_overhead_s + units * self.seconds_per_unit


@dataclass(frozen=True)
class InFlight:
    """The batch a stage is running: ``units`` in it, ``started`` (clock seconds) when it left the queue."""

    units: int
    started: float


def expected_wait(
    rate: ServiceRate, max_batch_size: int, queued: int, own: int, in_flight: InFlight | None, now: float
) -> float | None:
    """Seconds until ``own`` more units queued behind ``queued`` would be computed, at clock ``now``: what is left
    of the running batch (its expected duration less its age, at least 0) plus the batches of ``queued + own``;
    ``None`` while ``rate`` has measured nothing."""
    ahead = rate.seconds_for(queued + own, max_batch_size)
    if ahead is None:
        return None
    running = rate.seconds_for(in_flight.units, max_batch_size) if in_flight is not None else None
    left = max(0.0, running - (now - in_flight.started)) if running is not None and in_flight is not None else 0.0
    return left + ahead


@dataclass(frozen=True)
class Refusal:
    """Why work was not admitted: ``reason`` (a ``pose3d_rejected_total`` label), a sentence, and the seconds
    after which the same work would be admitted if nothing else arrived meanwhile."""

    reason: Literal["expected-wait", "overloaded"]
    detail: str
    retry_after_s: float


def check_count(
    stage: str, rate: ServiceRate, max_batch_size: int, max_queue: int, queued: int, own: int, fallback_s: float
) -> Refusal | None:
    """The memory bound of one stage: ``own`` units may join ``queued`` ones up to ``max_queue`` (an empty queue
    admits any size). Retry-After: the time to drain the excess at the measured rate (``fallback_s`` before it)."""
    if queued == 0 or queued + own <= max_queue:
        return None
    over = queued + own - max_queue
    drain = rate.seconds_for(over, max_batch_size)
    return Refusal(
        "overloaded",
        f"{stage} queue is full ({queued} of {max_queue} units queued, {own} more asked)",
        drain if drain is not None else fallback_s,
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


def check_path(
    path: Sequence[tuple[Stage, int]], remaining_s: float, wait_fraction: float
) -> tuple[Refusal | None, list[PathWait]]:
    """Admit a request whose ``path`` is ``(stage, units)`` pairs and whose deadline is ``remaining_s`` away, or not.

    Refused when some stage of the path has work queued and the summed expected waits exceed ``wait_fraction`` of
    ``remaining_s``; the Retry-After is the excess over that share (the time the queues need to drain enough)."""
    waits = [PathWait(s.stage, units, s.expected_wait_s(units)) for s, units in path]
    if not any(s.queued_units for s, _ in path):
        return None, waits
    total = sum(w.wait_s for w in waits if w.wait_s is not None)
    allowed = wait_fraction * max(remaining_s, 0.0)
    if total <= allowed:
        return None, waits
    slowest = max(waits, key=lambda w: w.wait_s or 0.0)
    detail = (
        f"over capacity: the work queued ahead would take {total:.3g} s (most at {slowest.stage}: "
        f"{slowest.wait_s or 0.0:.3g} s) but the deadline is {max(remaining_s, 0.0):.3g} s away"
    )
    return Refusal("expected-wait", detail, total - allowed), waits
