"""The worker link's one codec: engine dataclasses ↔ ``pose3d.worker.v1`` messages (internal, not the public API).

Arrays travel packed (:func:`pack`: little-endian float32 bytes in C order plus the shape). A page of results stacks
the people of all its frames into ONE ``(P, 159)`` array, a row of :data:`PERSON_FIELDS` per person (box and 2D
keypoints in pixels, 3D keypoints and distance in metres; NaN: not placed), decoded as views into one buffer.
Images and clips cross encoded; a decoded ``(H, W, 3) uint8 RGB`` array crosses raw. These functions only convert
(a malformed message raises ``ValueError``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, fields
from itertools import islice
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from model.joints import NUM_JOINTS, JointSet
from service.engine.types import (
    BoxSource,
    ClipLimits,
    EncodedClip,
    EstimateOptions,
    Frame,
    FrameResult,
    ImageFrame,
    KeypointFrame,
    ModelInfo,
    PersonResult,
    Progress,
    StreamInfo,
    Summary,
    WindowMode,
    Work,
)
from service.engine.world import world_from_json, world_to_json
from service.proto_gen.pose3d.worker.v1 import worker_pb2 as wpb

F32: Final = np.dtype("<f4")
"""The wire's float: little-endian float32."""
PERSON_FIELDS: Final = {
    "box": (4,), "box_score": (), "keypoints_2d": (NUM_JOINTS, 2), "keypoint_scores": (NUM_JOINTS,),
    "keypoints_3d": (NUM_JOINTS, 3), "keypoints_3d_camera": (NUM_JOINTS, 3), "distance_m": (),
}  # fmt: skip
"""One person's row of a results page, in order, with each field's shape (``()``: one value)."""
PERSON_WIDTH: Final = sum(math.prod(shape) for shape in PERSON_FIELDS.values())
OFF_LOOP_FRAMES: Final = 256
"""Frames from which a ``Work`` is converted off the event loop, both ways (20 000 keypoint frames: ~0.1 s to a
message on the gateway, ~0.2 s back on the worker, every stream served there waiting meanwhile)."""


def pack(arrays: npt.NDArray[Any] | Sequence[npt.ArrayLike], target: wpb.Array | None = None) -> wpb.Array:
    """An array, or equal-shaped ``arrays`` stacked, as one packed array (``target``, filled in place, or a new
    message): float32 bytes in C order, the parts one after the other — no stacking copy, no per-value list."""
    msg = wpb.Array() if target is None else target
    if isinstance(arrays, np.ndarray):
        msg.data, shape = np.ascontiguousarray(arrays, dtype=F32).tobytes(), arrays.shape
    else:
        parts = [np.asarray(a, dtype=F32) for a in arrays]
        msg.data, shape = b"".join(a.tobytes() for a in parts), (len(parts), *(parts[0].shape if parts else ()))
    msg.shape.extend(shape)
    return msg


def unpack(msg: wpb.Array, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """A read-only float32 view of a packed array of exactly ``shape``; raises ``ValueError`` otherwise."""
    if tuple(msg.shape) != shape or len(msg.data) != 4 * math.prod(shape):
        raise ValueError(f"array of shape {tuple(msg.shape)} where {shape} was expected")
    return np.frombuffer(msg.data, dtype=F32).reshape(shape).astype(np.float32, copy=False)


def options_to_pb(options: EstimateOptions) -> wpb.Options:
    msg = wpb.Options(model=options.model or "", mode=options.mode.value)
    msg.world = world_to_json(options.camera, options.smoothing)
    if options.boxes:
        pack(options.boxes, msg.boxes)
    if options.flip_test is not None:
        msg.flip_test = options.flip_test
    if options.max_people is not None:
        msg.max_people = options.max_people
    return msg


def options_from_pb(msg: wpb.Options) -> EstimateOptions:
    boxes = unpack(msg.boxes, (len(msg.boxes.data) // 16, 4)) if msg.HasField("boxes") else None
    camera, smoothing = world_from_json(msg.world)
    return EstimateOptions(
        model=msg.model or None,
        boxes=None if boxes is None else tuple((b[0], b[1], b[2], b[3]) for b in boxes.tolist()),
        flip_test=msg.flip_test if msg.HasField("flip_test") else None,
        max_people=msg.max_people if msg.HasField("max_people") else None,
        mode=WindowMode(msg.mode or WindowMode.CENTRED),
        camera=camera,
        smoothing=smoothing,
    )


def frame_to_pb(frame: Frame) -> wpb.Frame:
    """An engine frame: encoded image bytes, a raw RGB array, or one person's keypoints."""
    msg = wpb.Frame(frame_index=frame.frame_index, timestamp_s=frame.timestamp_s)  # None: not set
    if isinstance(frame, KeypointFrame):
        pack(frame.keypoints, msg.keypoints)
        pack(frame.scores, msg.scores)
        msg.image_width, msg.image_height = frame.image_size
        msg.joint_set = frame.joint_set.value
        return msg
    msg.detect_people = frame.detect_people
    if isinstance(frame.image, bytes):
        msg.encoded_image = frame.image
    else:
        image = np.ascontiguousarray(frame.image, dtype=np.uint8)
        msg.raw_image = image.tobytes()
        msg.image_height, msg.image_width = int(image.shape[0]), int(image.shape[1])
    return msg


def frame_from_pb(msg: wpb.Frame) -> Frame:
    timestamp = msg.timestamp_s if msg.HasField("timestamp_s") else None
    if msg.HasField("keypoints"):
        scores = unpack(msg.scores, (NUM_JOINTS,)) if msg.HasField("scores") else np.ones(NUM_JOINTS, np.float32)
        return KeypointFrame(
            keypoints=unpack(msg.keypoints, (NUM_JOINTS, 2)),
            scores=scores,
            image_size=(msg.image_width, msg.image_height),
            joint_set=JointSet(msg.joint_set or JointSet.COCO),
            frame_index=msg.frame_index,
            timestamp_s=timestamp,
        )
    if msg.HasField("encoded_image"):
        return ImageFrame(msg.encoded_image, msg.frame_index, timestamp, msg.detect_people)
    if msg.raw_image:
        # a writable copy: the message's bytes are immutable and the pipeline hands arrays to torch
        array = np.frombuffer(msg.raw_image, dtype=np.uint8).reshape(msg.image_height, msg.image_width, 3).copy()
        return ImageFrame(array, msg.frame_index, timestamp, msg.detect_people)
    raise ValueError("a worker Frame carries no data")


def clip_to_pb(clip: EncodedClip) -> wpb.Clip:
    """An encoded clip as it travels: its container bytes unchanged (the worker decodes them)."""
    return wpb.Clip(data=clip.data, container=clip.container, every_nth=clip.every_nth, start=clip.start,
                    **asdict(clip.limits))  # fmt: skip


def clip_from_pb(msg: wpb.Clip) -> EncodedClip:
    if not msg.data or msg.every_nth < 1 or msg.start < 0:
        raise ValueError("a Clip needs data, every_nth >= 1 and start >= 0")
    limits = ClipLimits(msg.max_clip_frames, msg.max_clip_seconds, msg.max_frame_side, msg.max_image_pixels)
    return EncodedClip(msg.data, msg.container, limits, msg.every_nth, msg.start)


def work_to_pb(work: Work) -> wpb.Work:
    """``work`` whose frames are in hand (a sequence) or an encoded clip; an async source is fed in chunks."""
    msg = wpb.Work(request_id=work.request_id, options=options_to_pb(work.options), stream_id=work.stream or "",
                   close=work.close, chunk_frames=work.chunk_frames, chunk_timeout_s=work.chunk_timeout_s or 0.0)  # fmt: skip
    if isinstance(work.frames, EncodedClip):
        msg.clip.CopyFrom(clip_to_pb(work.frames))
    elif isinstance(work.frames, Sequence):
        msg.frames.frames.extend(frame_to_pb(f) for f in work.frames)
    else:
        raise TypeError("an async source of frames crosses to a worker in chunks, not as one Work")
    return msg


def work_from_pb(msg: wpb.Work, deadline: float | None) -> Work:
    frames = clip_from_pb(msg.clip) if msg.HasField("clip") else [frame_from_pb(f) for f in msg.frames.frames]
    return Work(msg.request_id, frames, options_from_pb(msg.options), deadline, msg.stream_id or None, msg.close,
                msg.chunk_frames, msg.chunk_timeout_s or None)  # fmt: skip


def results_to_pb(results: Sequence[FrameResult]) -> wpb.Results:
    """A page of results: its people stacked in frame order, one packed row of :data:`PERSON_FIELDS` each."""
    people = [p for r in results for p in r.people]
    msg = wpb.Results(
        frame_index=[r.frame_index for r in results],
        timestamp_s=[math.nan if r.timestamp_s is None else r.timestamp_s for r in results],
        people=[len(r.people) for r in results],
        track_id=[p.track_id for p in people],
        warnings_per_person=[len(p.warnings) for p in people],
        warnings=[w for p in people for w in p.warnings],
    )
    unplaced = np.full(3 * NUM_JOINTS, np.nan, np.float32)
    rows = [
        np.concatenate((p.box, (p.box_score,), p.keypoints_2d, p.keypoint_scores, p.keypoints_3d,
                        unplaced if p.keypoints_3d_camera is None else p.keypoints_3d_camera,
                        (math.nan if p.distance_m is None else p.distance_m,)), axis=None, dtype=F32)
        for p in people
    ]  # fmt: skip
    if not pack(rows, msg.person).data:
        msg.person.shape.append(PERSON_WIDTH)  # (0, 159)
    return msg


def results_from_pb(msg: wpb.Results) -> list[FrameResult]:
    n, counts = len(msg.track_id), list(msg.people)
    if sum(counts) != n or not len(msg.timestamp_s) == len(msg.frame_index) == len(counts):
        raise ValueError("a Results page whose counts disagree")
    rows, columns, at = unpack(msg.person, (n, PERSON_WIDTH)), list[Any](), 0
    for shape in PERSON_FIELDS.values():  # views into the one buffer
        width = math.prod(shape)
        columns.append(rows[:, at : at + width].reshape(n, *shape) if shape else rows[:, at].tolist())
        at += width
    box, score, kp2d, kps, kp3d, cam, distance = columns
    warnings, people = iter(msg.warnings), list[PersonResult]()  # each person takes its count of them in turn
    for i, (track, count) in enumerate(zip(msg.track_id, msg.warnings_per_person, strict=True)):
        placed, d = not math.isnan(cam[i, 0, 0]), distance[i]
        people.append(PersonResult(track, box[i], score[i], kp2d[i], kps[i], kp3d[i], cam[i] if placed else None,
                                   None if math.isnan(d) else d, tuple(islice(warnings, count))))  # fmt: skip
    in_order = iter(people)
    return [
        FrameResult(index, None if math.isnan(timestamp) else timestamp, list(islice(in_order, count)))
        for index, timestamp, count in zip(msg.frame_index, msg.timestamp_s, counts, strict=True)
    ]


def model_to_pb(info: ModelInfo) -> wpb.ModelInfo:
    return wpb.ModelInfo(**asdict(info))


def model_from_pb(msg: wpb.ModelInfo) -> ModelInfo:
    return ModelInfo(**{f.name: getattr(msg, f.name) for f in fields(ModelInfo)})


def progress_to_pb(step: Progress) -> wpb.Progress:
    msg = wpb.Progress(results=results_to_pb(step.results), frames_decoded=step.frames_decoded)
    if (s := step.summary) is not None:
        msg.summary.CopyFrom(wpb.Summary(model=model_to_pb(s.model), box_source=s.box_source.value,
                                         timings_ms=s.timings_ms))  # fmt: skip
    return msg


def progress_from_pb(msg: wpb.Progress) -> Progress:
    summary = None
    if msg.HasField("summary"):
        s = msg.summary
        summary = Summary(model_from_pb(s.model), BoxSource(s.box_source), dict(s.timings_ms))
    return Progress(results_from_pb(msg.results), msg.frames_decoded, summary)


def stream_to_pb(info: StreamInfo, tail: Sequence[FrameResult] = ()) -> wpb.StreamReply:
    return wpb.StreamReply(stream_id=info.stream_id, model=info.model, mode=info.mode.value,
                           frames_received=info.frames_received, frames_emitted=info.frames_emitted,
                           smoothing_lag_frames=info.smoothing_lag_frames, tail=results_to_pb(tail))  # fmt: skip


def stream_from_pb(msg: wpb.StreamReply) -> StreamInfo:
    mode = WindowMode(msg.mode or WindowMode.CENTRED)
    received, emitted, lag = msg.frames_received, msg.frames_emitted, msg.smoothing_lag_frames
    return StreamInfo(msg.stream_id, msg.model, mode, received, emitted, lag)
