"""The engine's door: a request is admitted or refused here, once, by the expected time of its whole path.

``admit`` builds the request's path through the stages (decode → person boxes → detector → CA-PF tokens → lifter
for images; the lifter alone for 2D keypoints), with the units it will bring to each (images, people, windows), and
refuses it at once (:class:`~service.errors.OverCapacity`, 503 + Retry-After) when the work queued ahead would keep
it past ``engine.admission_wait_fraction`` of its remaining deadline (rule and estimates in
:mod:`service.engine.admission`). The estimate is calibrated by what admitted requests really took: each admitted
request is a :class:`Ticket` whose :meth:`Ticket.finish` reports its real time in the engine to the pipeline's
:class:`~service.engine.admission.WaitCalibration`. ``engine.admission = "count"`` turns it off (only the
per-stage count bound).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.engine.admission import Stage, WaitCalibration, check_path
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


@dataclass
class Ticket:
    """An admitted request: ``expected_s`` in the engine from ``admitted_at`` (``time.monotonic()``); ``finish``
    once it is done (or failed) reports the real time to ``calibration`` (``None``: nothing to report)."""

    calibration: WaitCalibration | None
    expected_s: float
    admitted_at: float

    def finish(self, metrics: Metrics) -> None:
        """The request left the engine: calibrate (once) and export the new scale to ``metrics``."""
        if self.calibration is not None:
            self.calibration.observe(self.expected_s, time.monotonic() - self.admitted_at)
            metrics.admission_scale.set(self.calibration.factor)
            self.calibration = None


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
        return Ticket(None, 0.0, now)
    calibration = pipeline.wait_calibration
    path = request_path(pipeline, lifter, opts, images, keypoint_frames)
    verdict = check_path(path, deadline - now, engine.admission_wait_fraction, calibration.factor)
    metrics = pipeline.metrics
    for wait in verdict.waits:
        if wait.wait_s is not None:
            metrics.expected_wait.labels(stage=wait.stage).observe(wait.wait_s)
    if verdict.refusal is not None:
        metrics.rejected_total.labels(reason=verdict.refusal.reason).inc()
        raise OverCapacity(verdict.refusal.detail, retry_after_s=verdict.refusal.retry_after_s)
    return Ticket(calibration, verdict.expected_s / calibration.factor, now)
