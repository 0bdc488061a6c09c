"""The engine's door: a request is admitted or refused here, once, by the expected time of its whole path.

``admit`` builds the request's path through the stages (decode → person boxes → detector → CA-PF tokens → lifter
for images; the lifter alone for 2D keypoints), with the units it will bring to each (images, people, windows), and
refuses it at once (:class:`~service.errors.OverCapacity`, 503 + Retry-After) when the work queued ahead would keep
it past ``engine.admission_wait_fraction`` of its remaining deadline (rule and estimates in
:mod:`service.engine.admission`: the whole engine's backlog by Little's law, the per-stage queues before it has
measured a rate). Each admitted request is a :class:`Ticket` that brings its work to the pipeline's
:class:`~service.engine.admission.Backlog` and takes it off when the request leaves the engine
(:meth:`Ticket.finish`). ``engine.admission = "count"`` turns it off (only the per-stage count bound).

:func:`probe` is the same rule for the cheapest request of a kind (one image with one person, or one keypoint
frame, through the cheapest served model), asked before a request's body is read: when even that would be refused,
the request is refused from its headers alone, without reading, parsing or decoding its upload.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.engine.admission import Backlog, Refusal, Stage, check_path
from service.errors import OverCapacity

if TYPE_CHECKING:
    from service.engine.context import FrameOptions
    from service.engine.lifters import ServedLifter
    from service.engine.pipeline import Pipeline
    from service.metrics import Metrics


def request_path(
    pipeline: Pipeline, lifter: ServedLifter, opts: FrameOptions, images: int, keypoint_frames: int
) -> list[tuple[Stage, int]]:
    """``(stage, units)`` for ``images`` encoded images and ``keypoint_frames`` 2D-keypoint frames under ``opts``
    (people per image: the client's boxes, else one — the person detector's count is not known before it runs)."""
    people = len(opts.boxes) if opts.boxes else 1
    path: list[tuple[Stage, int]] = []
    if images:
        path.append((pipeline.decode, images))
        if opts.boxes is None and pipeline.box_finder.detector is not None:
            path.append((pipeline.boxes, images))
        path.append((pipeline.detect, images * people))
        if lifter.name in pipeline.tokens:
            path.append((pipeline.tokens[lifter.name], images * people))
    frames = images * people + keypoint_frames
    if frames:
        path.append((pipeline.lift[lifter.name], frames))
    return path


def probe(pipeline: Pipeline, images: bool, timeout_s: float | None) -> Refusal | None:
    """The door's verdict now on the cheapest request of its kind (``images``: one image, one person, no boxes
    stage; else one keypoint frame) through the cheapest served model, with ``timeout_s`` (``None``: the engine's
    ``request_timeout_s``, also its cap) left: a lower bound of every such request's wait, so a refusal here is
    one the full check would give. Counted in ``pose3d_rejected_total``; ``None`` when admitted or off."""
    engine = pipeline.settings.engine
    if engine.admission != "time":
        return None
    remaining = min(timeout_s, engine.request_timeout_s) if timeout_s else engine.request_timeout_s
    fraction = engine.admission_wait_fraction
    front: list[tuple[Stage, int]] = [(pipeline.decode, 1), (pipeline.detect, 1)] if images else []
    paths = [
        front + [(stage, 1) for stage in (pipeline.tokens.get(name),) if images and stage] + [(pipeline.lift[name], 1)]
        for name, lifter in pipeline.lifters.items()
        if images or not lifter.needs_image
    ]
    backlog = pipeline.backlog
    verdicts = [check_path(path, remaining, fraction, _engine_s(backlog, _work(path))).refusal for path in paths]
    if not verdicts or not all(verdicts):
        return None
    refusal = min((v for v in verdicts if v is not None), key=lambda v: v.retry_after_s)
    pipeline.metrics.rejected_total.labels(reason=refusal.reason).inc()
    return refusal


def _work(path: Sequence[tuple[Stage, int]]) -> float:
    """Seconds of compute the path's units cost at the stages' measured rates (cold stages: nothing)."""
    return sum(c for stage, units in path if (c := stage.compute_s(units)) is not None)


def _engine_s(backlog: Backlog, work: float) -> float | None:
    """The whole engine's estimate for ``work`` more (:meth:`Backlog.wait_s`), while admitted work is pending."""
    return backlog.wait_s(work) if backlog.pending > 0 else None


@dataclass
class Ticket:
    """An admitted request, from ``admitted_at`` (``time.monotonic()``), bringing ``work`` seconds of compute to
    ``backlog`` (``None``: admission off); ``finish`` once it is done (or failed) reports the work as done and the
    backlog's rate to the metrics (a ticket dropped without ``finish`` only takes its work off the backlog)."""

    admitted_at: float
    backlog: Backlog | None = None
    work: float = 0.0

    def __post_init__(self) -> None:
        self._release: weakref.finalize[..., Any] | None = None
        if self.backlog is not None:
            self.backlog.admit(self.work, self.admitted_at)
            self._release = weakref.finalize(self, self.backlog.finish, self.work, self.admitted_at, False)

    def finish(self, metrics: Metrics) -> None:
        """The request left the engine: its work is done (once); export the backlog's rate to ``metrics``."""
        if self._release is None or self._release.detach() is None or self.backlog is None:
            return
        self.backlog.finish(self.work, time.monotonic())
        if (spw := self.backlog.seconds_per_work) is not None:
            metrics.admission_seconds_per_work.set(spw)


def admit(
    pipeline: Pipeline,
    lifter: ServedLifter,
    opts: FrameOptions,
    images: int,
    keypoint_frames: int,
    deadline: float | None,
) -> Ticket:
    """Raise :class:`OverCapacity` unless this request (see :func:`request_path`) may enter the engine now;
    ``deadline`` is a ``time.monotonic()`` instant (``None``: no deadline, always admitted). The ticket's ``finish``
    must be called when the request is done."""
    engine = pipeline.settings.engine
    now = time.monotonic()
    if engine.admission != "time" or deadline is None:
        return Ticket(now)
    backlog = pipeline.backlog
    path = request_path(pipeline, lifter, opts, images, keypoint_frames)
    work = _work(path)
    fraction = engine.admission_wait_fraction
    verdict = check_path(path, deadline - now, fraction, _engine_s(backlog, work))
    metrics = pipeline.metrics
    for wait in verdict.waits:
        if wait.wait_s is not None:
            metrics.expected_wait.labels(stage=wait.stage).observe(wait.wait_s)
    if verdict.refusal is not None:
        metrics.rejected_total.labels(reason=verdict.refusal.reason).inc()
        raise OverCapacity(verdict.refusal.detail, retry_after_s=verdict.refusal.retry_after_s)
    return Ticket(now, backlog, work)
