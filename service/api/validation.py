"""Request validation: form fields, person boxes, 2D keypoint arrays. Bad input never reaches a model.

Malformed text (not JSON, not a number) is a 400; well-formed but unacceptable values (shapes,
non-finite numbers, out-of-range coordinates) are 422; too many people or frames are 413/422 as stated.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, Final, TypeVar

import numpy as np

from model.joints import NUM_JOINTS, JointSet
from service.api.schemas import MAX_MODEL_NAME, StreamFrameKeypoints
from service.config import LimitSettings
from service.engine.types import FloatArray, KeypointFrame
from service.errors import BadRequest, InvalidInput, PayloadTooLarge

COORDINATE_SPAN = 8.0
"""Keypoints and boxes may lie at most this many image sizes outside the image (finite, sane lifter input)."""
DEFAULT_FPS = 30.0
"""Timestamps of keypoint sequences given without any: ``frame_index / DEFAULT_FPS``."""

Box = tuple[float, float, float, float]
T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)

_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _form_field(name: str, value: str | None, convert: Callable[[str], T], what: str) -> T | None:
    """``convert`` of a form field's stripped text; ``None`` when absent, 400 (``must be <what>``) when it raises
    ValueError or KeyError."""
    if value is None or value == "":
        return None
    try:
        return convert(value.strip())
    except (ValueError, KeyError):
        raise BadRequest(f"form field {name!r} must be {what}, got {value[:40]!r}") from None


def parse_bool(name: str, value: str | None) -> bool | None:
    """A boolean form field (``true``/``false``/``1``/``0``/``yes``/``no``/``on``/``off``); ``None`` when absent."""
    return _form_field(name, value, lambda text: _BOOLS[text.lower()], "true or false")


def parse_int(name: str, value: str | None, low: int, high: int) -> int | None:
    """An integer form field in ``[low, high]``; ``None`` when absent. Not a number: 400; out of range: 422."""
    number = _form_field(name, value, int, "an integer")
    if number is not None and not low <= number <= high:
        raise InvalidInput(f"form field {name!r} must be in [{low}, {high}], got {number}")
    return number


def parse_float(name: str, value: str | None) -> float | None:
    """A finite float form field; ``None`` when absent."""
    number = _form_field(name, value, float, "a number")
    if number is not None and not math.isfinite(number):
        raise InvalidInput(f"form field {name!r} must be finite")
    return number


def parse_choice(name: str, value: str | None, choices: type[E], default: E) -> E:
    """A form field naming a member of ``choices`` (any case); ``default`` when absent, 422 when no member."""
    if value is None or value == "":
        return default
    try:
        return choices(value.strip().lower())
    except ValueError:
        known = ", ".join(m.value for m in choices)
        raise InvalidInput(f"form field {name!r} must be one of {known}, got {value[:40]!r}") from None


def parse_model_name(value: str | None) -> str | None:
    name = (value or "").strip()
    if len(name) > MAX_MODEL_NAME:
        raise InvalidInput(f"model name is longer than {MAX_MODEL_NAME} characters")
    return name or None


def check_boxes(raw: Any, limits: LimitSettings) -> tuple[Box, ...]:
    """Validate ``[[x1, y1, x2, y2], ...]`` pixels: finite, ``x2 > x1``, ``y2 > y1``, at most ``max_people``."""
    if not isinstance(raw, list) or not all(isinstance(b, list | tuple) for b in raw):
        raise InvalidInput("boxes must be a JSON array of [x1, y1, x2, y2] arrays")
    if len(raw) == 0:
        raise InvalidInput("boxes must not be empty (omit the field to detect people)")
    if len(raw) > limits.max_people:
        raise PayloadTooLarge(f"{len(raw)} boxes given; at most {limits.max_people} people per frame")
    boxes: list[Box] = []
    bound = COORDINATE_SPAN * limits.max_frame_side
    for i, box in enumerate(raw):
        if len(box) != 4 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box):
            raise InvalidInput(f"boxes[{i}] must be 4 numbers [x1, y1, x2, y2]")
        x1, y1, x2, y2 = (float(v) for v in box)
        if not all(math.isfinite(v) and abs(v) <= bound for v in (x1, y1, x2, y2)):
            raise InvalidInput(f"boxes[{i}] has a non-finite or out-of-range coordinate")
        if not (x2 > x1 and y2 > y1):
            raise InvalidInput(f"boxes[{i}] must have x2 > x1 and y2 > y1")
        boxes.append((x1, y1, x2, y2))
    return tuple(boxes)


def parse_boxes(text: str | None, limits: LimitSettings) -> tuple[Box, ...] | None:
    """The ``boxes`` form field (JSON text); ``None`` when absent."""
    if text is None or text.strip() == "":
        return None
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or an integer past Python's digit limit
        raise BadRequest("form field 'boxes' is not valid JSON") from None
    return check_boxes(raw, limits)


def check_boxes_inside(boxes: Sequence[Box], width: int, height: int) -> None:
    """Each box must overlap the ``width`` x ``height`` image (a box wholly outside it has no person)."""
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise InvalidInput(f"boxes[{i}] lies entirely outside the {width}x{height} image")


def keypoint_array(raw: Any, image_size: tuple[int, int], limits: LimitSettings) -> tuple[FloatArray, FloatArray]:
    """``keypoints_2d`` of one frame ``(17, 2|3)`` or a sequence ``(T, 17, 2|3)`` → ``((T, 17, 2), (T, 17))``
    float32 (pixels, scores; scores are ones when not given). Raises InvalidInput (422) on any bad value."""
    try:
        array = np.asarray(raw, dtype=np.float64)
    except (ValueError, TypeError):
        raise InvalidInput("keypoints_2d must be a regular array: every frame 17 joints of equal length") from None
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1] != NUM_JOINTS or array.shape[2] not in (2, 3) or array.shape[0] == 0:
        raise InvalidInput(f"keypoints_2d must have shape (17, 2|3) or (T, 17, 2|3), got {tuple(array.shape)}")
    if array.shape[0] > limits.max_clip_frames:
        raise PayloadTooLarge(f"{array.shape[0]} frames of keypoints; at most {limits.max_clip_frames}")
    if not np.isfinite(array).all():
        raise InvalidInput("keypoints_2d contains NaN or infinite values")
    width, height = int(image_size[0]), int(image_size[1])
    if max(width, height) > limits.max_frame_side:
        raise InvalidInput(f"image_size {width}x{height} exceeds the largest side {limits.max_frame_side}")
    xy = array[..., :2]
    span = COORDINATE_SPAN * max(width, height)
    if np.abs(xy).max() > span:
        raise InvalidInput(f"keypoints_2d lie more than {COORDINATE_SPAN:g} image sizes outside the image")
    if array.shape[2] == 3:
        scores = array[..., 2]
        if scores.min() < 0.0 or scores.max() > 1.0:
            raise InvalidInput("keypoint scores must lie in [0, 1]")
    else:
        scores = np.ones(array.shape[:2])
    return xy.astype(np.float32), scores.astype(np.float32)


def frame_times(timestamps_s: Sequence[float] | None, count: int) -> list[float]:
    """Seconds of ``count`` keypoint frames: the client's (one finite value per frame), else (``None``)
    ``frame_index / DEFAULT_FPS``."""
    if timestamps_s is None:
        return [i / DEFAULT_FPS for i in range(count)]
    if len(timestamps_s) != count:
        raise InvalidInput(f"timestamps_s has {len(timestamps_s)} entries for {count} frames")
    if not all(math.isfinite(t) for t in timestamps_s):
        raise InvalidInput("timestamps_s must be finite")
    return [float(t) for t in timestamps_s]


def stream_keypoint_frame(body: StreamFrameKeypoints, limits: LimitSettings) -> KeypointFrame:
    """The :class:`KeypointFrame` of one stream frame given as JSON keypoints ``(17, 2|3)``."""
    xy, scores = keypoint_array(body.keypoints_2d, body.image_size, limits)
    if xy.shape[0] != 1:
        raise InvalidInput("a stream frame carries the keypoints of one frame: shape (17, 2|3)")
    if body.timestamp_s is not None and not math.isfinite(body.timestamp_s):
        raise InvalidInput("timestamp_s must be finite")
    return KeypointFrame(
        keypoints=xy[0],
        scores=scores[0],
        image_size=(int(body.image_size[0]), int(body.image_size[1])),
        joint_set=JointSet(body.joint_set),
        frame_index=body.frame_index,
        timestamp_s=body.timestamp_s,
    )


_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # fullmatch: ``$`` would pass a trailing line break


def safe_request_id(offered: str | None) -> str:
    """A client's request id when it is sane (1-128 of ``A-Za-z0-9._:-``: safe in logs and headers),
    else a fresh uuid4 hex."""
    return offered if offered and _SAFE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex


class ValidationProblem(InvalidInput):
    """422 carrying the field-level errors as the ``errors`` extension member."""

    def __init__(self, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.extensions = {"errors": errors}


ECHO_CHARS: Final = 200
"""At most this many characters of a client's text (a JSON key or form field name in a ``loc``, a message) are
echoed in a 422's ``errors`` and ``detail``; longer ones end in ``…``."""
MAX_LISTED_ERRORS: Final = 20
"""At most this many field errors are listed in a 422's ``errors``; the ``detail`` says how many were left out."""


def _bounded(text: str) -> str:
    """``text`` cut to :data:`ECHO_CHARS` characters, ending in ``…`` when cut."""
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 1] + "…"


def validation_problem(exc: Any, where: str = "request") -> ValidationProblem:
    """Turn a pydantic ``ValidationError`` / FastAPI ``RequestValidationError`` into a 422 problem whose ``errors``
    are the first :data:`MAX_LISTED_ERRORS` reduced to JSON-safe ``loc``/``msg``/``type`` (never echoing the input;
    each name and message at most :data:`ECHO_CHARS` characters). Every transport's 422 (REST bodies and forms,
    WebSocket messages, gRPC ``INVALID_ARGUMENT`` details) is built here."""
    found = [e for e in exc.errors() if isinstance(e, dict)]
    errors: list[dict[str, Any]] = []
    for err in found[:MAX_LISTED_ERRORS]:
        path = [p if isinstance(p, int) else _bounded(str(p)) for p in err.get("loc", ())]
        errors.append(
            {"loc": path, "msg": _bounded(str(err.get("msg", ""))), "type": _bounded(str(err.get("type", "")))}
        )
    first = errors[0] if errors else {"loc": [], "msg": "invalid"}
    loc = _bounded(".".join(str(p) for p in first["loc"]))
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    if len(found) > len(errors):
        more = f" (and {len(found) - 1} more; {len(found) - len(errors)} not listed in errors)"
    return ValidationProblem(f"{where} is invalid at {loc or 'top level'}: {first['msg']}{more}", errors)
