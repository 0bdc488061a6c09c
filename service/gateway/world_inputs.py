"""Camera intrinsics and smoothing options of REST requests (form fields and JSON fields), and their warnings.

The same names everywhere: ``fx, fy, cx, cy`` (pixels) or ``fov_deg`` (horizontal field of view, degrees) —
or neither, for the documented default (principal point at the image centre, a
:data:`~service.geometry.camera.DEFAULT_FOV_DEG` degree horizontal FOV); ``smoothing`` = ``none`` |
``one_euro`` | ``savgol`` and ``smoothing_params``, a JSON object of
:class:`~service.geometry.smoothing.SmoothingSpec`'s parameters (defaults documented there).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import FormData

from service.engine.types import FrameResult
from service.errors import BadRequest, InvalidInput
from service.gateway.inputs import form_text
from service.gateway.validation import parse_float
from service.gateway.world_fields import CAMERA_FIELDS, SMOOTHING_PARAMS, build_world
from service.geometry.camera import DEFAULT_FOCAL_WARNING, CameraSpec
from service.geometry.smoothing import SmoothingMethod, SmoothingSpec

MAX_PERSON_WARNINGS = 20
"""Distinct per-person warnings summarised in a response's ``warnings`` (each person keeps its own)."""

FORM_SCHEMA: dict[str, Any] = {
    **{
        name: {"type": "number", "description": "camera intrinsics, pixels (give all four, or fov_deg)"}
        for name in CAMERA_FIELDS[:4]
    },
    "fov_deg": {"type": "number", "description": "horizontal field of view, degrees (instead of fx, fy, cx, cy)"},
    "smoothing": {"type": "string", "enum": [m.value for m in SmoothingMethod], "description": "per-track smoothing"},
    "smoothing_params": {
        "type": "string",
        "description": f"JSON object, any of {', '.join(SMOOTHING_PARAMS)}",
        "example": '{"half_window": 4, "polyorder": 2}',
    },
}


def world_from_form(form: FormData) -> tuple[CameraSpec, SmoothingSpec]:
    camera = {name: parse_float(name, form_text(form, name)) for name in CAMERA_FIELDS}
    raw_method = (form_text(form, "smoothing") or "none").strip().lower()
    try:
        method = SmoothingMethod(raw_method)
    except ValueError:
        choices = ", ".join(m.value for m in SmoothingMethod)
        raise InvalidInput(f"form field 'smoothing' must be one of {choices}, got {raw_method[:40]!r}") from None
    text = form_text(form, "smoothing_params")
    params: Any = None
    if text:
        try:
            params = json.loads(text)
        except ValueError:
            raise BadRequest("form field 'smoothing_params' must be a JSON object") from None
        if not isinstance(params, dict):
            raise BadRequest("form field 'smoothing_params' must be a JSON object")
    return build_world(camera, method, params)


def world_warnings(camera: CameraSpec | None, frames: Sequence[FrameResult]) -> list[str]:
    """The default-focal warning (``camera`` given and default) and a summary of the per-person warnings."""
    out = [DEFAULT_FOCAL_WARNING] if camera is not None and camera.is_default else []
    counts = Counter((p.track_id, w) for f in frames for p in f.people for w in p.warnings)
    for (track, text), n in list(counts.items())[:MAX_PERSON_WARNINGS]:
        out.append(f"track {track}: {text} ({n} frame{'s' if n != 1 else ''}; see people[].warnings)")
    if len(counts) > MAX_PERSON_WARNINGS:
        out.append(f"... and {len(counts) - MAX_PERSON_WARNINGS} more person warnings")
    return out
