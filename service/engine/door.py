"""The engine's door: a request is admitted or refused here, once, by the expected time of its whole path.

:func:`admit` refuses a request at once (:class:`~service.errors.OverCapacity`, 503 + Retry-After) by the rule of
:mod:`service.engine.admission`, over its path through the stages with the units it brings to each; an admitted one
is a :class:`Ticket` whose work stays on the pipeline's backlog until it leaves the engine. :func:`probe` is the same
rule for the cheapest request of a kind, asked before a request's body is read. ``engine.admission = "count"`` turns
it off (only the per-stage count bound).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from service.engine.admission import Backlog, Refusal, Stage, check_path
from service.engine.streams import FrameOptions
from service.errors import OverCapacity

if TYPE_CHECKING:
    from service.engine.lifters import ServedLifter
    from service.engine.pipeline import Pipeline
    from service.metrics import Metrics


_ONE_GIVEN_BOX: Final = FrameOptions(((0.0, 0.0, 1.0, 1.0),), None, False)
"""The cheapest request's options (:func:`probe`): one person, in a box the client gives (no person-box stage)."""


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
    """The door's verdict now on the cheapest request of its kind (``images``: one image with one person; else one
    keypoint frame) through the cheapest served model, ``timeout_s`` (capped by ``request_timeout_s``) away: a lower
    bound of every such request's wait, so its refusal is one the full check would give. ``None``: admitted or off."""
    engine = pipeline.settings.engine
    if engine.admission != "time":
        return None
    remaining = min(timeout_s, engine.request_timeout_s) if timeout_s else engine.request_timeout_s
    fraction = engine.admission_wait_fraction
    paths = [
        request_path(pipeline, lifter, _ONE_GIVEN_BOX, int(images), int(not images))
        for lifter in pipeline.lifters.values()
        if images or not lifter.needs_image
    ]
    verdicts = [check_path(path, remaining, fraction, pipeline.backlog.wait_s(_work(path))).refusal for path in paths]
    if not verdicts or not all(verdicts):
        return None
    refusal = min((v for v in verdicts if v is not None), key=lambda v: v.retry_after_s)
    pipeline.metrics.rejected_total.labels(reason=refusal.reason).inc()
    return refusal


def _work(path: Sequence[tuple[Stage, int]]) -> float:
    """Seconds of compute the path's units cost at the stages' measured rates (cold stages: nothing)."""
    return sum(c for stage, units in path if (c := stage.compute_s(units)) is not None)


@dataclass
class Ticket:
    """An admitted request, from ``admitted_at`` (``time.monotonic()``), bringing ``work`` seconds of compute to
    ``backlog`` (``None``: admission off). A ticket dropped without :meth:`finish` only takes its work off."""

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
    counts: tuple[int, int],
    deadline: float | None,
    *,
    refuse: bool = True,
) -> Ticket:
    """Raise :class:`OverCapacity` unless this request of ``counts`` = (images, keypoint frames)
    (:func:`request_path`) may enter the engine now; ``deadline``
    is a ``time.monotonic()`` instant (``None``: always admitted). ``refuse=False``: a later part of a request
    already admitted (a chunk after its first), whose work joins the backlog but is never refused for time. Call the
    ticket's ``finish`` when it is done."""
    engine, metrics = pipeline.settings.engine, pipeline.metrics
    now = time.monotonic()
    if engine.admission != "time" or deadline is None:
        return Ticket(now)
    path = request_path(pipeline, lifter, opts, *counts)
    work = _work(path)
    if not refuse:
        return Ticket(now, pipeline.backlog, work)
    verdict = check_path(path, deadline - now, engine.admission_wait_fraction, pipeline.backlog.wait_s(work))
    for wait in verdict.waits:
        if wait.wait_s is not None:
            metrics.expected_wait.labels(stage=wait.stage).observe(wait.wait_s)
    if verdict.refusal is not None:
        metrics.rejected_total.labels(reason=verdict.refusal.reason).inc()
        raise OverCapacity(verdict.refusal.detail, retry_after_s=verdict.refusal.retry_after_s)
    return Ticket(now, pipeline.backlog, work)
