"""Per-track pose sequences out of a result document (the REST ``PoseResponse`` JSON, or JSON-lines frames)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class TrackSequence:
    """One person over the frames from its first to its last appearance.

    ``joints_3d (T, 17, 3)`` float64 metres, camera frame (x right, y down, z forward): ``keypoints_3d_camera`` when
    every frame of the track has it (the person was placed), else the root-relative ``keypoints_3d``. Frames where
    the track is missing hold its previous pose (``present[t]`` is False there).
    """

    track_id: int
    joints_3d: npt.NDArray[np.float64]
    present: npt.NDArray[np.bool_]
    frame_time_s: float


def frames_of(document: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The frames of a ``PoseResponse`` document or a list of frame documents, in ``frame_index`` order."""
    frames = document["frames"] if isinstance(document, Mapping) else document
    return sorted(frames, key=lambda f: int(f["frame_index"]))


def track_ids(frames: Sequence[Mapping[str, Any]]) -> list[int]:
    return sorted({int(p["track_id"]) for f in frames for p in f["people"]})


def frame_time_s(frames: Sequence[Mapping[str, Any]]) -> float:
    """Median spacing of the frames' ``timestamp_s`` (seconds); ``1 / 30`` when unknown."""
    stamps = [float(f["timestamp_s"]) for f in frames if f.get("timestamp_s") is not None]
    if len(stamps) == len(frames) and len(stamps) >= 2:
        steps = np.diff(np.asarray(stamps, dtype=np.float64))
        step = float(np.median(steps))
        if step > 0:
            return step
    return 1.0 / DEFAULT_FPS


def track_sequence(frames: Sequence[Mapping[str, Any]], track_id: int) -> TrackSequence:
    """The sequence of ``track_id`` (KeyError when no frame has it)."""
    found = [next((p for p in f["people"] if int(p["track_id"]) == track_id), None) for f in frames]
    placed = all(p.get("keypoints_3d_camera") is not None for p in found if p is not None)
    key = "keypoints_3d_camera" if placed else "keypoints_3d"
    rows = [None if p is None else np.asarray(p[key], dtype=np.float64).reshape(17, 3) for p in found]
    seen = [i for i, joints in enumerate(rows) if joints is not None]
    if not seen:
        raise KeyError(track_id)
    poses: list[npt.NDArray[np.float64]] = []
    present: list[bool] = []
    for joints in rows[seen[0] : seen[-1] + 1]:
        present.append(joints is not None)
        poses.append(joints if joints is not None else poses[-1])
    return TrackSequence(track_id, np.stack(poses), np.asarray(present, dtype=np.bool_), frame_time_s(frames))
