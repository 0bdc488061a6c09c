"""Results in the camera frame: every person's root translation, and per-track smoothing (after lifting).

The numerics live in :mod:`service.geometry`; this module applies them to :class:`FrameResult` lists. A clip is
placed and smoothed whole (:func:`place_clip`, frames keyed by position); a stream keeps one
:class:`~service.geometry.smoothing.TrackSmoother` per stream in this process (:class:`StreamWorld`, frames keyed
by their stream index), so a stream gives the clip's results, delayed by the smoother's lag. The smoothing state
is NOT in the frame buffer: a stream that moves to another worker (failover) restarts its smoothing there, and
the frames a Savitzky–Golay stream was holding back on the lost worker are not returned.

Smoothed per track: the root-relative pose and the translation together (``(18, 3)`` metres), so that
``keypoints_3d_camera = keypoints_3d + t`` holds after smoothing too.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from service.engine.types import FrameResult, PersonResult
from service.geometry.camera import CameraSpec, person_warnings, solve_translation
from service.geometry.smoothing import SmoothingMethod, SmoothingSpec, TrackSmoother


def world_to_json(camera: CameraSpec, smoothing: SmoothingSpec) -> str:
    """The stream-metadata form of the options (``""`` when both are the defaults)."""
    if camera == CameraSpec() and smoothing == SmoothingSpec():
        return ""
    return json.dumps({"camera": asdict(camera), "smoothing": asdict(smoothing)}, sort_keys=True)


def world_from_json(text: str) -> tuple[CameraSpec, SmoothingSpec]:
    if not text:
        return CameraSpec(), SmoothingSpec()
    d: dict[str, Any] = json.loads(text)
    s = dict(d["smoothing"])
    s["method"] = SmoothingMethod(s["method"])
    return CameraSpec(**d["camera"]), SmoothingSpec(**s)


def place_person(person: PersonResult, image_size: tuple[int, int], camera: CameraSpec) -> PersonResult:
    """``person`` with ``keypoints_3d_camera`` ``(17, 3)`` metres, ``distance_m`` and its ``warnings``."""
    k = camera.resolve(image_size)
    try:
        t = solve_translation(person.keypoints_3d, person.keypoints_2d, person.keypoint_scores, k)
    except ValueError as e:
        return replace(person, warnings=(f"not placed in the camera frame: {e}",))
    notes = person_warnings(person.keypoints_2d, person.keypoint_scores, image_size, float(t[2]))
    return replace(
        person,
        keypoints_3d_camera=(person.keypoints_3d + t).astype(np.float32),
        distance_m=float(np.linalg.norm(t)),
        warnings=tuple(notes),
    )


def place_frame(frame: FrameResult, camera: CameraSpec) -> FrameResult:
    if frame.image_size is None or not frame.people:
        return frame
    size = frame.image_size
    return replace(frame, people=[place_person(p, size, camera) for p in frame.people])


def _smoothed(frame: FrameResult, values: dict[int, np.ndarray[Any, np.dtype[np.float64]]]) -> FrameResult:
    people = []
    for p in frame.people:
        v = values.get(p.track_id)
        if v is None or p.keypoints_3d_camera is None:
            people.append(p)
            continue
        pose, t = v[:17], v[17]
        people.append(
            replace(
                p,
                keypoints_3d=pose.astype(np.float32),
                keypoints_3d_camera=(pose + t).astype(np.float32),
                distance_m=float(np.linalg.norm(t)),
            )
        )
    return replace(frame, people=people)


def _tracks(frame: FrameResult) -> dict[int, np.ndarray[Any, np.dtype[np.float64]]]:
    """Per placed person: ``(18, 3)`` metres, the root-relative pose and the translation."""
    out = {}
    for p in frame.people:
        if p.keypoints_3d_camera is not None:
            pose = p.keypoints_3d.astype(np.float64)
            t = (p.keypoints_3d_camera[0] - p.keypoints_3d[0]).astype(np.float64)
            out[p.track_id] = np.concatenate([pose, t[None]])
    return out


def _feed(smoother: TrackSmoother[FrameResult], key: int, frame: FrameResult) -> list[FrameResult]:
    released = smoother.push(key, frame.timestamp_s, _tracks(frame), frame)
    return [_smoothed(f, v) for f, v in released]


def place_clip(frames: list[FrameResult], camera: CameraSpec, smoothing: SmoothingSpec) -> list[FrameResult]:
    """A clip's results (in clip order) placed in the camera frame and smoothed (frames keyed by position)."""
    placed = [place_frame(f, camera) for f in frames]
    if smoothing.method is SmoothingMethod.NONE:
        return placed
    smoother: TrackSmoother[FrameResult] = TrackSmoother(smoothing)
    out = [r for i, f in enumerate(placed) for r in _feed(smoother, i, f)]
    return out + [_smoothed(f, v) for f, v in smoother.flush()]


class StreamWorld:
    """Placement and smoothing of streams in this process: one smoother per stream (least recently used
    dropped past ``max_streams``)."""

    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._smoothers: OrderedDict[str, TrackSmoother[FrameResult]] = OrderedDict()

    def step(self, stream_id: str, world: str, frames: list[FrameResult], final: bool = False) -> list[FrameResult]:
        """Place ``frames`` (a push's results) and pass them through the stream's smoother; returns the frames
        now final, in stream order. ``final`` (the stream's close) flushes and forgets the smoother. A frame
        older than one already smoothed (concurrent pushes finishing out of order) is placed but not smoothed."""
        camera, smoothing = world_from_json(world)
        placed = sorted((place_frame(f, camera) for f in frames), key=lambda f: f.frame_index)
        if smoothing.method is SmoothingMethod.NONE:
            return placed
        smoother = self._smoothers.pop(stream_id, None) or TrackSmoother(smoothing)
        out: list[FrameResult] = []
        for f in placed:
            try:
                out += _feed(smoother, f.frame_index, f)
            except ValueError:
                out.append(f)
        if final:
            out += [_smoothed(f, v) for f, v in smoother.flush()]
        else:
            self._smoothers[stream_id] = smoother
            while len(self._smoothers) > self.max_streams:
                self._smoothers.popitem(last=False)
        return out

    def forget(self, stream_id: str) -> None:
        self._smoothers.pop(stream_id, None)
