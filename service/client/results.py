"""Results as JSON documents shaped exactly like the REST API's (``PoseResponse``, ``Frame``, ``Person``)."""

from __future__ import annotations

from typing import Any

from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.rpc import codec


def frame_json(msg: pb.FrameResult) -> dict[str, Any]:
    """``{"frame_index", "timestamp_s", "people": [...]}`` with ``(17, 2)``/``(17, 3)`` nested lists."""
    frame = codec.frame_result_from_pb(msg)
    return {
        "frame_index": frame.frame_index,
        "timestamp_s": frame.timestamp_s,
        "people": [
            {
                "track_id": int(p.track_id),
                "box": [float(v) for v in p.box.tolist()],
                "box_score": float(p.box_score),
                "keypoints_2d": p.keypoints_2d.astype(float).tolist(),
                "keypoint_scores": p.keypoint_scores.astype(float).tolist(),
                "keypoints_3d": p.keypoints_3d.astype(float).tolist(),
                "keypoints_3d_camera": None
                if p.keypoints_3d_camera is None
                else p.keypoints_3d_camera.astype(float).tolist(),
                "distance_m": p.distance_m,
                "warnings": list(p.warnings),
            }
            for p in frame.people
        ],
    }


def model_ref_json(msg: pb.ModelInfo) -> dict[str, Any]:
    return {"name": msg.name, "version": msg.version, "weights": msg.weights, "random_weights": msg.random_weights}


def estimate_json(msg: pb.EstimateResponse) -> dict[str, Any]:
    """An ``EstimateResponse`` as the REST ``PoseResponse`` document."""
    return {
        "request_id": msg.request_id,
        "model": model_ref_json(msg.model),
        "joint_names": list(msg.joint_names),
        "units": msg.units,
        "coordinate_frame": msg.coordinate_frame,
        "box_source": codec.BOX_SOURCE_FROM_PB[msg.box_source].value,
        "frames": [frame_json(f) for f in msg.frames],
        "timings_ms": {k: round(float(v), 3) for k, v in msg.timings_ms.items()},
        "warnings": list(msg.warnings),
    }
