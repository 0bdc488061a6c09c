"""Options of media requests from their text fields, whatever carried them (REST form fields, a job's staged
fields). Malformed text is a 400, unacceptable values a 422 (see :mod:`service.api.validation`). Camera and
smoothing fields have the same names everywhere (docs/world-and-smoothing.md).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from service.api.schemas import ModelRef
from service.api.validation import parse_bool, parse_boxes, parse_choice, parse_float, parse_int, parse_model_name
from service.api.world_fields import CAMERA_FIELDS, build_world
from service.config import LimitSettings
from service.engine.types import EstimateOptions, FrameResult, ModelInfo, WindowMode
from service.errors import BadRequest
from service.geometry.camera import DEFAULT_FOCAL_WARNING, CameraSpec
from service.geometry.smoothing import SmoothingMethod, SmoothingSpec

MAX_PERSON_WARNINGS: Final = 20
"""Distinct per-person warnings summarised in a response's ``warnings`` (each person keeps its own)."""
MEDIA_FIELDS: Final = frozenset(
    {"model", "boxes", "flip_test", "max_people", "mode", "every_nth", "smoothing", "smoothing_params", *CAMERA_FIELDS}
)
"""The text fields a media request (image or clip) reads."""

Fields = Mapping[str, str | None]


def media_options(fields: Fields, limits: LimitSettings) -> tuple[EstimateOptions, int]:
    """The engine options (``model`` None = the default for the media kind) and ``every_nth`` of a media request."""
    camera, smoothing = world_from_fields(fields)
    options = EstimateOptions(
        model=parse_model_name(fields.get("model")),
        boxes=parse_boxes(fields.get("boxes"), limits),
        flip_test=parse_bool("flip_test", fields.get("flip_test")),
        max_people=parse_int("max_people", fields.get("max_people"), 1, limits.max_people),
        mode=parse_choice("mode", fields.get("mode"), WindowMode, WindowMode.CENTRED),
        camera=camera,
        smoothing=smoothing,
    )
    every_nth = parse_int("every_nth", fields.get("every_nth"), 1, limits.max_every_nth) or 1
    return options, every_nth


def world_from_fields(fields: Fields) -> tuple[CameraSpec, SmoothingSpec]:
    camera = {name: parse_float(name, fields.get(name)) for name in CAMERA_FIELDS}
    method = parse_choice("smoothing", fields.get("smoothing"), SmoothingMethod, SmoothingMethod.NONE)
    params: Any = None
    if text := fields.get("smoothing_params"):
        try:
            params = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            raise BadRequest("form field 'smoothing_params' must be a JSON object") from None
        if not isinstance(params, dict):
            raise BadRequest("form field 'smoothing_params' must be a JSON object")
    return build_world(camera, method, params)


def random_weight_warnings(info: ModelInfo | ModelRef) -> list[str]:
    if info.random_weights:
        return [f"model {info.name!r} serves RANDOM weights (no checkpoint configured): its poses are meaningless"]
    return []


def world_warnings(camera: CameraSpec | None, frames: Sequence[FrameResult]) -> list[str]:
    """The default-focal warning (``camera`` given and default) and a summary of the per-person warnings."""
    out = [DEFAULT_FOCAL_WARNING] if camera is not None and camera.is_default else []
    counts = Counter((p.track_id, w) for f in frames for p in f.people for w in p.warnings)
    for (track, text), n in list(counts.items())[:MAX_PERSON_WARNINGS]:
        out.append(f"track {track}: {text} ({n} frame{'s' if n != 1 else ''}; see people[].warnings)")
    if len(counts) > MAX_PERSON_WARNINGS:
        out.append(f"... and {len(counts) - MAX_PERSON_WARNINGS} more person warnings")
    return out
