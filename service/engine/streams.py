"""The stream step: track → append to the frame buffer → the windows of what became ready → results.

Clips use it too (as a private in-memory stream), so a clip and the same frames pushed one by one give the same
windows by construction. What one request's frames are processed with is one value, :class:`StreamStep`, so that
the pipeline's calls stay short.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from service.engine.framebuffer import AppendStatus, Emission, FrameBuffer, FrameRecord, StreamMeta
from service.engine.lifters import LiftWindow, ServedLifter
from service.engine.pose_guide import attach_guide, guide_of
from service.engine.prepare import PreparedPeople
from service.engine.tracking import TrackState, assign_tracks
from service.engine.types import FloatArray, FrameResult, PersonResult, WindowMode
from service.engine.windows import WindowSpec, visible_limit, window_sources
from service.errors import Conflict, InternalError
from service.telemetry.tracing import stage_span

MAX_TRACKER_RETRIES = 8
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


@dataclass(frozen=True)
class ReadyFrame:
    """A frame whose windows are ready: its record and one window per person (record row order)."""

    record: FrameRecord
    windows: list[LiftWindow]


@dataclass(frozen=True)
class PreparedFrame:
    """One frame ready to append: its buffer frame ``index``, the client's ``timestamp_s``, its untracked
    ``people``, and whether to track them (``track=False``: a keypoint frame's single person is track 0)."""

    index: int
    timestamp_s: float | None
    people: PreparedPeople
    track: bool


class StreamReopened(Conflict):
    """The stream was closed and opened again (under the same id, with other options) since the caller read its
    metadata: read it again and redo the frame."""


async def append_frame(buffer: FrameBuffer, meta: StreamMeta, window: WindowSpec, frame: PreparedFrame) -> Emission:
    """Assign track ids and append ``frame`` to the stream ``meta`` describes (windowed by the lifter's ``window``).

    The tracker state (:meth:`FrameBuffer.tracker`) is written with the frame under a new token; when another writer
    moved it on meanwhile the append stores nothing and is redone on the newer state. A retried frame keeps its
    stored record.

    Raises:
        StreamReopened: the stored stream's metadata is not ``meta`` (a stale copy of a re-created stream).
    """
    stream_id, people = meta.stream_id, frame.people
    for _ in range(MAX_TRACKER_RETRIES):
        view = await buffer.tracker(stream_id)
        if view.meta != meta:
            raise StreamReopened(f"stream {stream_id!r} was opened again with other options")
        tracker: bytes | None = None
        if frame.track:
            state = TrackState.from_bytes(view.tracker) if view.tracker else TrackState()
            ids, new_state = assign_tracks(state, people.boxes, frame.index)
            tracker = attach_guide(new_state.to_bytes(), guide_of(people, frame.index))
        else:
            ids = list(range(people.num_people))
        record = people.to_record(frame.index, frame.timestamp_s, ids)
        emission = await buffer.append(stream_id, record, window, meta.mode, tracker, view.token)
        if emission.status is not AppendStatus.CONFLICT:
            return emission
    raise InternalError(f"stream {stream_id!r}: tracker state kept changing under concurrent writers")


def ready_frames(emission: Emission, window: WindowSpec, mode: WindowMode, flip_test: bool) -> list[ReadyFrame]:
    """The lift windows of every emitted target, each person's along its own track (targets whose frame never
    arrived are skipped)."""
    records = emission.records
    rows: dict[int, dict[int, int]] = {
        i: {int(t): r for r, t in enumerate(rec.track_ids)} for i, rec in records.items()
    }
    present: defaultdict[int, list[int]] = defaultdict(list)
    for i in sorted(records):
        for tid in rows[i]:
            present[tid].append(i)
    out: list[ReadyFrame] = []
    for target in emission.targets:
        rec = records.get(target)
        if rec is None:
            continue
        limit = visible_limit(target, emission.newest, mode)
        windows: list[LiftWindow] = []
        for tid in rec.track_ids:
            sources = window_sources(target, present[int(tid)], window, limit)
            picks = [(records[s], rows[s][int(tid)]) for s in sources]
            keypoints = np.stack([r.keypoints_norm[row] for r, row in picks])
            tokens = np.stack([r.tokens[row] for r, row in picks])
            windows.append(LiftWindow(keypoints, tokens, flip_test))
        out.append(ReadyFrame(rec, windows))
    return out


def frame_result(
    record: FrameRecord, poses: Sequence[FloatArray], frame_index: int | None = None, timestamp_s: float | None = None
) -> FrameResult:
    """One frame's result: every person of ``record`` with its 3D pose ``(17, 3)`` (in record row order);
    ``frame_index``/``timestamp_s`` override the record's (clips report the client's own)."""
    people = [
        PersonResult(
            track_id=int(record.track_ids[row]),
            box=record.boxes[row],
            box_score=float(record.box_scores[row]),
            keypoints_2d=record.keypoints_px[row],
            keypoint_scores=record.scores[row],
            keypoints_3d=np.asarray(pose, dtype=np.float32),
        )
        for row, pose in enumerate(poses)
    ]
    return FrameResult(
        frame_index=record.frame_index if frame_index is None else frame_index,
        timestamp_s=record.timestamp_s if timestamp_s is None else timestamp_s,
        people=people,
        image_size=record.image_size,
    )
