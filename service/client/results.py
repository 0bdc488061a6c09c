"""Results as JSON documents shaped exactly like the REST API's: the gRPC messages decoded, then written by the one
schema (:mod:`service.api.schemas`: ``PoseResponse``, ``Frame``, ``Person``), never by a second encoder here."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict

from service.api.schemas import Frame, ModelRef, PoseResponse
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.rpc import codec


def frame_json(msg: pb.FrameResult) -> dict[str, Any]:
    """``{"frame_index", "timestamp_s", "people": [...]}`` with ``(17, 2)``/``(17, 3)`` nested lists."""
    return Frame.of(codec.frame_result_from_pb(msg)).model_dump(mode="json")


def estimate_json(msg: pb.EstimateResponse) -> dict[str, Any]:
    """An ``EstimateResponse`` as the REST ``PoseResponse`` document."""
    head = PoseResponse(
        request_id=msg.request_id,
        model=ModelRef.model_validate(
            MessageToDict(msg.model, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        ),
        joint_names=list(msg.joint_names),
        box_source=codec.BOX_SOURCE_FROM_PB[msg.box_source].value,
        frames=[],
        timings_ms={k: round(float(v), 3) for k, v in msg.timings_ms.items()},
        warnings=list(msg.warnings),
    )
    return {**head.model_dump(mode="json"), "frames": [frame_json(f) for f in msg.frames]}
