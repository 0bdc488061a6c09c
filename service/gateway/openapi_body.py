"""The OpenAPI description of the ``POST /v1/pose3d`` body (multipart media or JSON keypoints), shared by the
routes that take the same inputs (``/v1/pose3d``, ``/v1/jobs``)."""

from __future__ import annotations

from typing import Any

from service.gateway.world_inputs import FORM_SCHEMA

CLIP_TYPES = "video/mp4, video/quicktime, video/webm, video/x-msvideo"
IMAGE_TYPES = "image/jpeg, image/png, image/webp"

MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "JPEG/PNG/WebP image or MP4/MOV/WebM/AVI clip"},
        "model": {"type": "string", "description": "served model name (GET /v1/models); default per input kind"},
        "boxes": {
            "type": "string",
            "description": "JSON [[x1, y1, x2, y2], ...] person boxes in pixels (every frame)",
            "example": "[[40, 20, 200, 460], [260, 30, 420, 470]]",
        },
        "flip_test": {"type": "boolean", "description": "test-time flip augmentation (default: the model's)"},
        "max_people": {"type": "integer", "minimum": 1, "description": "keep at most this many people per frame"},
        "mode": {"type": "string", "enum": ["centred", "causal"], "description": "temporal window mode (clips)"},
        "every_nth": {"type": "integer", "minimum": 1, "description": "clips: process every n-th frame"},
        **FORM_SCHEMA,
    },
}

OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": MULTIPART_SCHEMA,
                "encoding": {"file": {"contentType": f"{IMAGE_TYPES}, {CLIP_TYPES}"}},
            },
            "application/json": {"schema": {"$ref": "#/components/schemas/KeypointsRequest"}},
        },
    }
}
