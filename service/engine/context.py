"""What one request's frames are processed with (:class:`StreamStep`), one value so that the pipeline's calls
stay short."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from service.engine.framebuffer import Emission, FrameBuffer, StreamMeta
from service.engine.lifters import ServedLifter
from service.telemetry.tracing import stage_span

ClientIndex = list[tuple[int, float | None]]
"""Per buffer frame of a clip, the client's own ``(frame_index, timestamp_s)``."""


@dataclass
class Timings:
    """Seconds spent awaiting each stage by one request (summed over its frames)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            with stage_span(name):  # an OpenTelemetry span per stage (no-op unless tracing is set up)
                yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - started

    def as_ms(self) -> dict[str, float]:
        return {k: round(v * 1000.0, 3) for k, v in self.seconds.items()}


@dataclass(frozen=True)
class FrameOptions:
    """What a frame's preparation depends on (fixed per request or stream): client ``boxes`` (xyxy pixels, the
    same for every frame, or None), ``max_people``, and the flip test."""

    boxes: tuple[tuple[float, float, float, float], ...] | None
    max_people: int | None
    flip_test: bool


@dataclass(frozen=True)
class StreamStep:
    """One request's pass over one stream: its frame buffer (the shared one, or the pipeline's clip buffer), its
    metadata, the lifter ``meta.model`` names, the ``deadline`` (``time.monotonic()``), the per-stage ``timings``;
    ``client_index`` (a clip) is filled with each buffer frame's client ``(frame_index, timestamp_s)``, which its
    results report; ``emitted`` collects the emissions of its appends in order (a stream's smoothing resumes from
    the first one's snapshot)."""

    buffer: FrameBuffer
    meta: StreamMeta
    lifter: ServedLifter
    deadline: float | None
    timings: Timings = field(default_factory=Timings)
    client_index: ClientIndex | None = None
    emitted: list[Emission] = field(default_factory=list)

    @property
    def stream_id(self) -> str:
        return self.meta.stream_id

    @property
    def options(self) -> FrameOptions:
        m = self.meta
        return FrameOptions(m.boxes, m.max_people, m.flip_test)
