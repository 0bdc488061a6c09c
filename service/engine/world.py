"""Results in the camera frame: every person's root translation, and per-track smoothing (after lifting).

The numerics live in :mod:`service.geometry`. A clip is placed and smoothed whole (:func:`place_clip`); a stream's
smoother lives in the frame buffer as a blob (:func:`encode_smoother`), resumed by :func:`smooth_stream`, so a
stream gives the clip's results, delayed by the smoother's lag, whichever workers serve its frames. The
root-relative pose and the translation are smoothed together (``(18, 3)`` metres per track), so that
``keypoints_3d_camera = keypoints_3d + t`` holds after smoothing too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from service.engine.framebuffer import Emission
from service.engine.types import FrameResult, PersonResult
from service.geometry.camera import CameraSpec, person_warnings, solve_translation
from service.geometry.smoothing import SmoothingMethod, SmoothingSpec, TrackSmoother


def world_to_json(camera: CameraSpec, smoothing: SmoothingSpec) -> str:
    """The stream-metadata form of the options (``""`` when both are the defaults)."""
    if camera == CameraSpec() and smoothing == SmoothingSpec():
        return ""
    return json.dumps({"camera": asdict(camera), "smoothing": asdict(smoothing)}, sort_keys=True)


def smooths(world: str) -> bool:
    """True when the stream-metadata options ``world`` ask for smoothing."""
    return world_from_json(world)[1].method is not SmoothingMethod.NONE


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
    return replace(frame, people=[place_person(p, frame.image_size, camera) for p in frame.people])


def _smoothed(frame: FrameResult, values: dict[int, np.ndarray[Any, np.dtype[np.float64]]]) -> FrameResult:
    """``frame`` with each placed person's pose and translation replaced by its smoothed ``(18, 3)`` values."""

    def one(p: PersonResult, v: np.ndarray[Any, np.dtype[np.float64]] | None) -> PersonResult:
        if v is None or p.keypoints_3d_camera is None:
            return p
        pose, t = v[:17], v[17]
        camera = (pose + t).astype(np.float32)
        return replace(
            p, keypoints_3d=pose.astype(np.float32), keypoints_3d_camera=camera, distance_m=float(np.linalg.norm(t))
        )

    return replace(frame, people=[one(p, values.get(p.track_id)) for p in frame.people])


def _tracks(frame: FrameResult) -> dict[int, np.ndarray[Any, np.dtype[np.float64]]]:
    """Per placed person: ``(18, 3)`` metres, the root-relative pose and the translation."""
    return {
        p.track_id: np.concatenate([p.keypoints_3d, p.keypoints_3d_camera[:1] - p.keypoints_3d[:1]]).astype(np.float64)
        for p in frame.people
        if p.keypoints_3d_camera is not None
    }


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


@dataclass(frozen=True)
class SmoothingUpdate:
    """The smoothing state to store after a push: valid at emission cursor ``cursor``, replacing the one valid at
    ``expected`` (:meth:`~service.engine.framebuffer.FrameBuffer.smoothed`)."""

    expected: int
    cursor: int
    state: bytes


def smooth_stream(
    world: str, emissions: Sequence[Emission], frames: list[FrameResult], final: bool = False
) -> tuple[list[FrameResult], SmoothingUpdate | None]:
    """Place ``frames`` (what ``emissions``, one push's appends in order, made ready) and smooth them from the
    stream's stored smoother; returns the frames now final, in stream order, and the state to store (None: none).

    The state comes from the first emission that emitted anything (the later ones of the same push found it not
    yet stored). Found at that emission's start: resumed (a replay gets the state it had the first time, so it
    is answered the same). Found behind it (an emission was never smoothed: its push failed for good): smoothing
    restarts. Found ahead (an old replay): placed, not smoothed. ``final`` (the stream's close) flushes the
    smoother and stores nothing."""
    camera, smoothing = world_from_json(world)
    placed = sorted((place_frame(f, camera) for f in frames), key=lambda f: f.frame_index)
    emitted = [e for e in emissions if len(e.targets)] or list(emissions[:1] if final else [])
    if smoothing.method is SmoothingMethod.NONE or not emitted:
        return placed, None
    start, snapshot = emitted[0].targets.start, emitted[0].smoothing
    if snapshot.cursor > start or (snapshot.cursor == start and snapshot.state is None):
        return placed, None
    resumed = snapshot.cursor == start and snapshot.state is not None
    smoother = decode_smoother(smoothing, snapshot.state or b"") if resumed else TrackSmoother(smoothing)
    out: list[FrameResult] = []
    for f in placed:
        try:
            out += _feed(smoother, f.frame_index, f)
        except ValueError:  # older than a frame already smoothed
            out.append(f)
    if final:
        return out + [_smoothed(f, v) for f, v in smoother.flush()], None
    return out, SmoothingUpdate(snapshot.cursor, emitted[-1].targets.stop, encode_smoother(smoother))


# ---- the smoother as bytes: JSON, arrays as base64 of their little-endian bytes (exact) ----------------------------


def _array(a: npt.NDArray[Any] | None) -> list[Any] | None:
    if a is None:
        return None
    c = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return [c.dtype.str, list(c.shape), base64.b64encode(c.tobytes()).decode()]


def _unarray(v: list[Any] | None) -> npt.NDArray[Any] | None:
    if v is None:
        return None
    dtype, shape, data = v
    stored = np.frombuffer(base64.b64decode(data), dtype=np.dtype(dtype)).reshape(shape)
    return stored.astype(stored.dtype.newbyteorder("="))  # a native, writable copy


_PERSON_ARRAYS: Final = ("box", "keypoints_2d", "keypoint_scores", "keypoints_3d", "keypoints_3d_camera")


def _person_json(p: PersonResult) -> dict[str, Any]:
    d = {f.name: getattr(p, f.name) for f in fields(p)}
    return d | {k: _array(d[k]) for k in _PERSON_ARRAYS} | {"warnings": list(p.warnings)}


def _person(d: dict[str, Any]) -> PersonResult:
    return PersonResult(**(d | {k: _unarray(d[k]) for k in _PERSON_ARRAYS} | {"warnings": tuple(d["warnings"])}))


def _frame_json(f: FrameResult) -> dict[str, Any]:
    people = [_person_json(p) for p in f.people]
    return {"frame_index": f.frame_index, "timestamp_s": f.timestamp_s, "image_size": f.image_size, "people": people}


def _frame(d: dict[str, Any]) -> FrameResult:
    size = d["image_size"]
    people = [_person(p) for p in d["people"]]
    return FrameResult(int(d["frame_index"]), d["timestamp_s"], people, None if size is None else (size[0], size[1]))


def encode_smoother(smoother: TrackSmoother[FrameResult]) -> bytes:
    """The smoother's whole state (:meth:`TrackSmoother.to_state`), exact, as UTF-8 JSON."""
    st = smoother.to_state()
    doc = {
        "euro": {str(t): [_array(x), _array(dx), ts, k] for t, (x, dx, ts, k) in st["euro"].items()},
        "pending": [[k, _frame_json(f), {str(t): _array(v) for t, v in tracks.items()}] for k, f, tracks in st["pending"]],
        "samples": {str(t): {str(k): _array(v) for k, v in kv.items()} for t, kv in st["samples"].items()},
        "newest": st["newest"],
    }  # fmt: skip
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_smoother(spec: SmoothingSpec, data: bytes) -> TrackSmoother[FrameResult]:
    """Inverse of :func:`encode_smoother` (``b""``: a fresh smoother)."""
    if not data:
        return TrackSmoother(spec)
    doc = json.loads(data)
    state = {
        "euro": {int(t): (_unarray(x), _unarray(dx), ts, k) for t, (x, dx, ts, k) in doc["euro"].items()},
        "pending": [(k, _frame(f), {int(t): _unarray(v) for t, v in tr.items()}) for k, f, tr in doc["pending"]],
        "samples": {int(t): {int(k): _unarray(v) for k, v in kv.items()} for t, kv in doc["samples"].items()},
        "newest": doc["newest"],
    }
    return TrackSmoother.from_state(spec, state)


def encode_results(frames: Sequence[FrameResult]) -> bytes:
    """``frames``, exact, as UTF-8 JSON (what a closed stream keeps of its close's answer)."""
    return json.dumps([_frame_json(f) for f in frames], separators=(",", ":")).encode()


def decode_results(data: bytes) -> list[FrameResult]:
    """Inverse of :func:`encode_results`."""
    return [_frame(d) for d in json.loads(data)]
