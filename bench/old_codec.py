"""The hand-written ``pose3d.v1`` result encoders the service used before this wave, kept only as the baseline the
benches measure against (``bench/wire.py``: the worker's old replies; ``bench/schema_cost.py``: the gRPC answer before
it was derived from the one schema). The service encodes answers with :func:`service.gateway.messages.to_message`."""

from __future__ import annotations

import numpy as np

from service.api.schemas import COORDINATE_FRAME, UNITS
from service.engine.types import EstimateResult, FrameResult, ModelInfo, PersonResult
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.rpc.codec import BOX_SOURCE_TO_PB


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


def frame_result_to_pb(result: FrameResult) -> pb.FrameResult:
    msg = pb.FrameResult(frame_index=result.frame_index, people=[person_to_pb(p) for p in result.people])
    if result.timestamp_s is not None:
        msg.timestamp_s = result.timestamp_s
    return msg


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
