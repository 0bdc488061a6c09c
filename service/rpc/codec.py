"""Engine dataclasses ↔ protobuf messages (``pose3d.v1`` and ``pose3d.worker.v1``).

Arrays cross the wire as flat ``repeated float`` (float32, so they round-trip exactly):
``keypoints_2d`` ``(17, 2)`` pixels, ``keypoint_scores`` ``(17,)``, ``keypoints_3d`` ``(17, 3)`` metres,
``keypoints_3d_camera`` ``(17, 3)`` metres (empty: not placed), ``box`` ``(4,)`` xyxy pixels. Images and clips cross
encoded (the worker decodes them); a decoded ``(H, W, 3) uint8 RGB`` array (local tools) crosses as raw bytes.
These functions only convert; the gateway validates public input (see ``service.gateway.grpc_inputs``).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from model.joints import NUM_JOINTS, JointSet
from service.engine.types import (
    BoxSource,
    ClipLimits,
    ClipProgress,
    EncodedClip,
    EstimateOptions,
    EstimateResult,
    Frame,
    FrameResult,
    ImageFrame,
    KeypointFrame,
    ModelInfo,
    PersonResult,
    ReadyStatus,
    StreamInfo,
    WindowMode,
)
from service.geometry.camera import CameraSpec
from service.geometry.smoothing import SmoothingMethod, SmoothingSpec
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import worker_pb2 as wpb

UNITS: Final = "m"
COORDINATE_FRAME: Final = (
    "camera (x right, y down, z forward); keypoints_3d root-relative, keypoints_3d_camera absolute"
)

WINDOW_MODE_TO_PB: Final[dict[WindowMode, pb.WindowMode]] = {
    WindowMode.CENTRED: pb.WINDOW_MODE_CENTRED,
    WindowMode.CAUSAL: pb.WINDOW_MODE_CAUSAL,
}
WINDOW_MODE_FROM_PB: Final[dict[int, WindowMode]] = {
    pb.WINDOW_MODE_UNSPECIFIED: WindowMode.CENTRED,
    pb.WINDOW_MODE_CENTRED: WindowMode.CENTRED,
    pb.WINDOW_MODE_CAUSAL: WindowMode.CAUSAL,
}
JOINT_SET_TO_PB: Final[dict[JointSet, pb.JointSet]] = {
    JointSet.COCO: pb.JOINT_SET_COCO,
    JointSet.H36M: pb.JOINT_SET_H36M,
}
JOINT_SET_FROM_PB: Final[dict[int, JointSet]] = {
    pb.JOINT_SET_UNSPECIFIED: JointSet.COCO,
    pb.JOINT_SET_COCO: JointSet.COCO,
    pb.JOINT_SET_H36M: JointSet.H36M,
}
BOX_SOURCE_TO_PB: Final[dict[BoxSource, pb.BoxSource]] = {
    BoxSource.CLIENT: pb.BOX_SOURCE_CLIENT,
    BoxSource.WHOLE_FRAME: pb.BOX_SOURCE_WHOLE_FRAME,
    BoxSource.DETECTOR: pb.BOX_SOURCE_DETECTOR,
    BoxSource.KEYPOINTS: pb.BOX_SOURCE_KEYPOINTS,
}
BOX_SOURCE_FROM_PB: Final[dict[int, BoxSource]] = {v: k for k, v in BOX_SOURCE_TO_PB.items()}
SMOOTHING_TO_PB: Final[dict[SmoothingMethod, pb.SmoothingMethod]] = {
    SmoothingMethod.NONE: pb.SMOOTHING_METHOD_NONE,
    SmoothingMethod.ONE_EURO: pb.SMOOTHING_METHOD_ONE_EURO,
    SmoothingMethod.SAVGOL: pb.SMOOTHING_METHOD_SAVGOL,
}
SMOOTHING_FROM_PB: Final[dict[int, SmoothingMethod]] = {
    pb.SMOOTHING_METHOD_UNSPECIFIED: SmoothingMethod.NONE,
    **{v: k for k, v in SMOOTHING_TO_PB.items()},
}
_CAMERA_FIELDS: Final = ("fx", "fy", "cx", "cy", "fov_deg")
_SMOOTHING_FIELDS: Final = ("min_cutoff_hz", "beta", "d_cutoff_hz", "half_window", "polyorder")


def _f32(values: object, shape: tuple[int, ...]) -> np.ndarray[tuple[int, ...], np.dtype[np.float32]]:
    return np.asarray(values, dtype=np.float32).reshape(shape)


# ---- options -------------------------------------------------------------------------------------------------


def options_to_pb(options: EstimateOptions) -> pb.Options:
    msg = pb.Options(model=options.model or "", mode=WINDOW_MODE_TO_PB[options.mode])
    for x1, y1, x2, y2 in options.boxes or ():
        msg.boxes.add(x1=x1, y1=y1, x2=x2, y2=y2)
    if options.flip_test is not None:
        msg.flip_test = options.flip_test
    if options.max_people is not None:
        msg.max_people = options.max_people
    for name in _CAMERA_FIELDS:
        if (value := getattr(options.camera, name)) is not None:
            setattr(msg.camera, name, value)
    if options.smoothing != SmoothingSpec():
        msg.smoothing.method = SMOOTHING_TO_PB[options.smoothing.method]
        for name in _SMOOTHING_FIELDS:
            setattr(msg.smoothing, name, getattr(options.smoothing, name))
    return msg


def world_from_pb(msg: pb.Options) -> tuple[CameraSpec, SmoothingSpec]:
    """The camera and smoothing options. Raises ``ValueError`` on inconsistent or out-of-range values."""
    camera = CameraSpec(**{n: getattr(msg.camera, n) for n in _CAMERA_FIELDS if msg.camera.HasField(n)})
    s = msg.smoothing
    if s.method not in SMOOTHING_FROM_PB:
        raise ValueError(f"unknown smoothing method {s.method}")
    params = {n: getattr(s, n) for n in _SMOOTHING_FIELDS if s.HasField(n)}
    return camera, SmoothingSpec(SMOOTHING_FROM_PB[s.method], **params)


def options_from_pb(msg: pb.Options) -> EstimateOptions:
    boxes = tuple((b.x1, b.y1, b.x2, b.y2) for b in msg.boxes)
    camera, smoothing = world_from_pb(msg)
    return EstimateOptions(
        model=msg.model or None,
        boxes=boxes or None,
        flip_test=msg.flip_test if msg.HasField("flip_test") else None,
        max_people=msg.max_people if msg.HasField("max_people") else None,
        mode=WINDOW_MODE_FROM_PB.get(msg.mode, WindowMode.CENTRED),
        camera=camera,
        smoothing=smoothing,
    )


# ---- frames (worker protocol) --------------------------------------------------------------------------------


def frame_to_pb(frame: Frame) -> wpb.WorkerFrame:
    """An engine frame as a ``WorkerFrame`` (encoded bytes, raw RGB array or one person's keypoints)."""
    msg = wpb.WorkerFrame(frame_index=frame.frame_index)
    if frame.timestamp_s is not None:
        msg.timestamp_s = frame.timestamp_s
    if isinstance(frame, KeypointFrame):
        msg.keypoints.xy.extend(np.asarray(frame.keypoints, dtype=np.float32).ravel().tolist())
        msg.keypoints.scores.extend(np.asarray(frame.scores, dtype=np.float32).ravel().tolist())
        msg.image_width, msg.image_height = frame.image_size
        msg.joint_set = JOINT_SET_TO_PB[frame.joint_set]
        return msg
    msg.detect_people = frame.detect_people
    if isinstance(frame.image, bytes):
        msg.encoded_image = frame.image
    else:
        image = np.ascontiguousarray(frame.image, dtype=np.uint8)
        msg.raw_image.data = image.tobytes()
        msg.raw_image.height, msg.raw_image.width = int(image.shape[0]), int(image.shape[1])
    return msg


def frame_from_pb(msg: wpb.WorkerFrame) -> Frame:
    """Inverse of :func:`frame_to_pb`. Raises ``ValueError`` on a malformed message."""
    timestamp = msg.timestamp_s if msg.HasField("timestamp_s") else None
    kind = msg.WhichOneof("data")
    if kind == "keypoints":
        xy = _f32(msg.keypoints.xy, (NUM_JOINTS, 2))
        scores = (
            _f32(msg.keypoints.scores, (NUM_JOINTS,))
            if len(msg.keypoints.scores)
            else np.ones(NUM_JOINTS, dtype=np.float32)
        )
        return KeypointFrame(
            keypoints=xy,
            scores=scores,
            image_size=(msg.image_width, msg.image_height),
            joint_set=JOINT_SET_FROM_PB.get(msg.joint_set, JointSet.COCO),
            frame_index=msg.frame_index,
            timestamp_s=timestamp,
        )
    if kind == "encoded_image":
        return ImageFrame(msg.encoded_image, msg.frame_index, timestamp, msg.detect_people)
    if kind == "raw_image":
        raw = msg.raw_image
        # a writable copy: the message's bytes are immutable and the pipeline hands arrays to torch
        array = np.frombuffer(raw.data, dtype=np.uint8).reshape(raw.height, raw.width, 3).copy()
        return ImageFrame(array, msg.frame_index, timestamp, msg.detect_people)
    raise ValueError("WorkerFrame carries no data")


def clip_to_pb(clip: EncodedClip) -> wpb.EncodedClip:
    """An encoded clip as it travels: its container bytes unchanged (the worker decodes them)."""
    limits = clip.limits
    return wpb.EncodedClip(
        data=clip.data,
        container=clip.container,
        every_nth=clip.every_nth,
        start=clip.start,
        limits=wpb.ClipLimits(
            max_clip_frames=limits.max_clip_frames,
            max_clip_seconds=limits.max_clip_seconds,
            max_frame_side=limits.max_frame_side,
            max_image_pixels=limits.max_image_pixels,
        ),
    )


def clip_from_pb(msg: wpb.EncodedClip) -> EncodedClip:
    """Inverse of :func:`clip_to_pb`. Raises ``ValueError`` on a malformed message."""
    if not msg.data or msg.every_nth < 1 or msg.start < 0 or not msg.HasField("limits"):
        raise ValueError("EncodedClip needs data, every_nth >= 1, start >= 0 and limits")
    lim = msg.limits
    limits = ClipLimits(lim.max_clip_frames, lim.max_clip_seconds, lim.max_frame_side, lim.max_image_pixels)
    return EncodedClip(msg.data, msg.container, limits, msg.every_nth, msg.start)


# ---- results -------------------------------------------------------------------------------------------------


def person_to_pb(person: PersonResult) -> pb.Person:
    x1, y1, x2, y2 = (float(v) for v in np.asarray(person.box, dtype=np.float32).ravel())
    return pb.Person(
        track_id=person.track_id,
        box=pb.Box(x1=x1, y1=y1, x2=x2, y2=y2),
        box_score=float(person.box_score),
        keypoints_2d=np.asarray(person.keypoints_2d, dtype=np.float32).ravel().tolist(),
        keypoint_scores=np.asarray(person.keypoint_scores, dtype=np.float32).ravel().tolist(),
        keypoints_3d=np.asarray(person.keypoints_3d, dtype=np.float32).ravel().tolist(),
        keypoints_3d_camera=[]
        if person.keypoints_3d_camera is None
        else np.asarray(person.keypoints_3d_camera, dtype=np.float32).ravel().tolist(),
        distance_m=person.distance_m,
        warnings=list(person.warnings),
    )


def person_from_pb(msg: pb.Person) -> PersonResult:
    return PersonResult(
        track_id=msg.track_id,
        box=np.array([msg.box.x1, msg.box.y1, msg.box.x2, msg.box.y2], dtype=np.float32),
        box_score=msg.box_score,
        keypoints_2d=_f32(msg.keypoints_2d, (NUM_JOINTS, 2)),
        keypoint_scores=_f32(msg.keypoint_scores, (NUM_JOINTS,)),
        keypoints_3d=_f32(msg.keypoints_3d, (NUM_JOINTS, 3)),
        keypoints_3d_camera=_f32(msg.keypoints_3d_camera, (NUM_JOINTS, 3)) if len(msg.keypoints_3d_camera) else None,
        distance_m=msg.distance_m if msg.HasField("distance_m") else None,
        warnings=tuple(msg.warnings),
    )


def frame_result_to_pb(result: FrameResult) -> pb.FrameResult:
    msg = pb.FrameResult(frame_index=result.frame_index, people=[person_to_pb(p) for p in result.people])
    if result.timestamp_s is not None:
        msg.timestamp_s = result.timestamp_s
    return msg


def frame_result_from_pb(msg: pb.FrameResult) -> FrameResult:
    return FrameResult(
        frame_index=msg.frame_index,
        timestamp_s=msg.timestamp_s if msg.HasField("timestamp_s") else None,
        people=[person_from_pb(p) for p in msg.people],
    )


def frame_results_to_pb(results: list[FrameResult]) -> wpb.FrameResults:
    return wpb.FrameResults(frames=[frame_result_to_pb(r) for r in results])


def frame_results_from_pb(msg: wpb.FrameResults) -> list[FrameResult]:
    return [frame_result_from_pb(r) for r in msg.frames]


def clip_progress_to_pb(progress: ClipProgress) -> wpb.ClipProgress:
    return wpb.ClipProgress(
        frames=[frame_result_to_pb(r) for r in progress.results], frames_decoded=progress.frames_decoded
    )


def clip_progress_from_pb(msg: wpb.ClipProgress) -> ClipProgress:
    return ClipProgress([frame_result_from_pb(r) for r in msg.frames], msg.frames_decoded)


def model_info_to_pb(info: ModelInfo) -> pb.ModelInfo:
    return pb.ModelInfo(
        name=info.name,
        kind=info.kind,
        version=info.version,
        weights=info.weights,
        frames=info.frames,
        stride=info.stride,
        joint_set=info.joint_set,
        device=info.device,
        needs_image=info.needs_image,
        flip_test=info.flip_test,
        random_weights=info.random_weights,
    )


def model_info_from_pb(msg: pb.ModelInfo) -> ModelInfo:
    return ModelInfo(
        name=msg.name,
        kind=msg.kind,
        version=msg.version,
        weights=msg.weights,
        frames=msg.frames,
        stride=msg.stride,
        joint_set=msg.joint_set,
        device=msg.device,
        needs_image=msg.needs_image,
        flip_test=msg.flip_test,
    )


def estimate_result_to_pb(result: EstimateResult, joint_names: tuple[str, ...]) -> pb.EstimateResponse:
    return pb.EstimateResponse(
        request_id=result.request_id,
        model=model_info_to_pb(result.model),
        joint_names=list(joint_names),
        units=UNITS,
        coordinate_frame=COORDINATE_FRAME,
        box_source=BOX_SOURCE_TO_PB[result.box_source],
        frames=[frame_result_to_pb(f) for f in result.frames],
        timings_ms=dict(result.timings_ms),
    )


def estimate_result_from_pb(msg: pb.EstimateResponse) -> EstimateResult:
    return EstimateResult(
        request_id=msg.request_id,
        model=model_info_from_pb(msg.model),
        box_source=BOX_SOURCE_FROM_PB.get(msg.box_source, BoxSource.WHOLE_FRAME),
        frames=[frame_result_from_pb(f) for f in msg.frames],
        timings_ms=dict(msg.timings_ms),
    )


# ---- streams and readiness -----------------------------------------------------------------------------------


def stream_info_to_pb(info: StreamInfo) -> wpb.StreamInfo:
    return wpb.StreamInfo(
        stream_id=info.stream_id,
        model=info.model,
        mode=WINDOW_MODE_TO_PB[info.mode],
        frames_received=info.frames_received,
        frames_emitted=info.frames_emitted,
    )


def stream_info_from_pb(msg: wpb.StreamInfo) -> StreamInfo:
    return StreamInfo(
        stream_id=msg.stream_id,
        model=msg.model,
        mode=WINDOW_MODE_FROM_PB.get(msg.mode, WindowMode.CENTRED),
        frames_received=msg.frames_received,
        frames_emitted=msg.frames_emitted,
    )


def ready_to_pb(status: ReadyStatus) -> wpb.ReadyResponse:
    return wpb.ReadyResponse(ready=status.ready, detail=dict(status.detail))


def ready_from_pb(msg: wpb.ReadyResponse) -> ReadyStatus:
    return ReadyStatus(ready=msg.ready, detail=dict(msg.detail))
