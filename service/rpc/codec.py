"""The PUBLIC ``pose3d.v1`` messages → engine values (enums the gRPC gateway reads, results the client reads back);
answers are encoded from the one schema (:mod:`service.gateway.messages`), the worker link has :mod:`service.rpc.link`.

Public arrays are flat float32 ``repeated float``: ``keypoints_2d`` ``(17, 2)`` pixels, ``keypoint_scores``
``(17,)``, ``keypoints_3d`` / ``keypoints_3d_camera`` ``(17, 3)`` metres (empty: not placed), ``box`` ``(4,)`` xyxy
pixels. These functions only convert; the gateway validates public input (``service.gateway.grpc_inputs``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, TypeVar

import numpy as np

from model.joints import NUM_JOINTS, JointSet
from service.engine.types import BoxSource, FrameResult, PersonResult, WindowMode
from service.geometry.smoothing import SmoothingMethod
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb

E = TypeVar("E", bound=StrEnum)


def _from_pb(enum: type[E], prefix: str, unspecified: E | None = None) -> dict[int, E]:
    """Each proto constant ``<prefix>_<NAME>`` → the member ``NAME`` of ``enum`` (``<prefix>_UNSPECIFIED`` →
    ``unspecified``, when given)."""
    table = {int(getattr(pb, f"{prefix}_{member.name}")): member for member in enum}
    if unspecified is not None:
        table[int(getattr(pb, f"{prefix}_UNSPECIFIED"))] = unspecified
    return table


WINDOW_MODE_FROM_PB: Final = _from_pb(WindowMode, "WINDOW_MODE", WindowMode.CENTRED)
JOINT_SET_FROM_PB: Final = _from_pb(JointSet, "JOINT_SET", JointSet.COCO)
BOX_SOURCE_FROM_PB: Final = _from_pb(BoxSource, "BOX_SOURCE")
BOX_SOURCE_TO_PB: Final = {source: number for number, source in BOX_SOURCE_FROM_PB.items()}
SMOOTHING_FROM_PB: Final = _from_pb(SmoothingMethod, "SMOOTHING_METHOD", SmoothingMethod.NONE)


def _f32(values: object, shape: tuple[int, ...]) -> np.ndarray[tuple[int, ...], np.dtype[np.float32]]:
    return np.asarray(values, dtype=np.float32).reshape(shape)


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
