"""The PUBLIC ``pose3d.v1`` messages → engine dataclasses (options the gRPC gateway reads, results the client reads
back); answers are encoded once, from the one schema (:mod:`service.gateway.messages`), and the worker link has its
own codec, :mod:`service.rpc.link`.

Public arrays are flat ``repeated float`` (float32, so they round-trip exactly): ``keypoints_2d`` ``(17, 2)``
pixels, ``keypoint_scores`` ``(17,)``, ``keypoints_3d`` ``(17, 3)`` metres, ``keypoints_3d_camera`` ``(17, 3)``
metres (empty: not placed), ``box`` ``(4,)`` xyxy pixels. These functions only convert; the gateway validates
public input (see ``service.gateway.grpc_inputs``).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from model.joints import NUM_JOINTS, JointSet
from service.engine.types import BoxSource, FrameResult, PersonResult, WindowMode
from service.geometry.camera import CameraSpec
from service.geometry.smoothing import SmoothingMethod, SmoothingSpec
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb

WINDOW_MODE_TO_PB: Final[dict[WindowMode, pb.WindowMode]] = {
    WindowMode.CENTRED: pb.WINDOW_MODE_CENTRED,
    WindowMode.CAUSAL: pb.WINDOW_MODE_CAUSAL,
}
WINDOW_MODE_FROM_PB: Final[dict[int, WindowMode]] = {
    pb.WINDOW_MODE_UNSPECIFIED: WindowMode.CENTRED,
    pb.WINDOW_MODE_CENTRED: WindowMode.CENTRED,
    pb.WINDOW_MODE_CAUSAL: WindowMode.CAUSAL,
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
SMOOTHING_FROM_PB: Final[dict[int, SmoothingMethod]] = {
    pb.SMOOTHING_METHOD_UNSPECIFIED: SmoothingMethod.NONE,
    pb.SMOOTHING_METHOD_NONE: SmoothingMethod.NONE,
    pb.SMOOTHING_METHOD_ONE_EURO: SmoothingMethod.ONE_EURO,
    pb.SMOOTHING_METHOD_SAVGOL: SmoothingMethod.SAVGOL,
}
_CAMERA_FIELDS: Final = ("fx", "fy", "cx", "cy", "fov_deg")
_SMOOTHING_FIELDS: Final = ("min_cutoff_hz", "beta", "d_cutoff_hz", "half_window", "polyorder")


def _f32(values: object, shape: tuple[int, ...]) -> np.ndarray[tuple[int, ...], np.dtype[np.float32]]:
    return np.asarray(values, dtype=np.float32).reshape(shape)


# ---- options -------------------------------------------------------------------------------------------------


def world_from_pb(msg: pb.Options) -> tuple[CameraSpec, SmoothingSpec]:
    """The camera and smoothing options. Raises ``ValueError`` on inconsistent or out-of-range values."""
    camera = CameraSpec(**{n: getattr(msg.camera, n) for n in _CAMERA_FIELDS if msg.camera.HasField(n)})
    s = msg.smoothing
    if s.method not in SMOOTHING_FROM_PB:
        raise ValueError(f"unknown smoothing method {s.method}")
    params = {n: getattr(s, n) for n in _SMOOTHING_FIELDS if s.HasField(n)}
    return camera, SmoothingSpec(SMOOTHING_FROM_PB[s.method], **params)


# ---- results -------------------------------------------------------------------------------------------------


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


def frame_result_from_pb(msg: pb.FrameResult) -> FrameResult:
    return FrameResult(
        frame_index=msg.frame_index,
        timestamp_s=msg.timestamp_s if msg.HasField("timestamp_s") else None,
        people=[person_from_pb(p) for p in msg.people],
    )
