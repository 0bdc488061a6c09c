"""What a job runs: its options and its frames, rebuilt from the staged input by whichever gateway runs it.

A clip job stages the uploaded file and its text form fields; a keypoints job stages the JSON body. Both
are validated at submission with the same functions as ``POST /v1/pose3d`` and parsed again here, so a
resumed job runs with exactly the options it was accepted with.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from service.config import GatewaySettings, LimitSettings
from service.engine.types import EstimateOptions, FloatArray, Frame, ImageFrame, KeypointFrame
from service.errors import BadRequest
from service.gateway.media import ClipReader, DecodedFrame, MediaKind
from service.gateway.problem import validation_problem
from service.gateway.schemas import KeypointsRequest
from service.gateway.validation import (
    frame_times,
    keypoint_array,
    parse_bool,
    parse_boxes,
    parse_int,
    parse_mode,
)
from service.gateway.world_inputs import world_from_form

CLIP_FIELDS = frozenset(
    {"model", "boxes", "flip_test", "max_people", "mode", "every_nth", "fx", "fy", "cx", "cy", "fov_deg",
     "smoothing", "smoothing_params"}
)  # fmt: skip
"""The text form fields a clip job keeps (those ``POST /v1/pose3d`` reads)."""


def clip_options(fields: dict[str, str], settings: GatewaySettings, model: str) -> tuple[EstimateOptions, int]:
    """A clip job's engine options and ``every_nth`` from its form fields (422 on bad values)."""
    form = FormData(list(fields.items()))
    limits = settings.limits
    camera, smoothing = world_from_form(form)
    options = EstimateOptions(
        model=model,
        boxes=parse_boxes(fields.get("boxes"), limits),
        flip_test=parse_bool("flip_test", fields.get("flip_test")),
        max_people=parse_int("max_people", fields.get("max_people"), 1, limits.max_people),
        mode=parse_mode(fields.get("mode")),
        camera=camera,
        smoothing=smoothing,
    )
    every_nth = parse_int("every_nth", fields.get("every_nth"), 1, limits.max_every_nth) or 1
    return options, every_nth


def keypoint_options(body: KeypointsRequest, model: str) -> EstimateOptions:
    camera, smoothing = body.world()
    return EstimateOptions(model=model, flip_test=body.flip_test, mode=body.mode, camera=camera, smoothing=smoothing)


def parse_keypoints_fields(
    raw: bytes, limits: LimitSettings
) -> tuple[KeypointsRequest, FloatArray, FloatArray, list[float]]:
    """Blocking: the validated request, its ``(T, 17, 2)`` pixels, ``(T, 17)`` scores and ``T`` times.
    Not JSON → 400; wrong shape or values → 422; more frames than allowed → 413."""
    try:
        document: Any = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("keypoints body is not valid JSON") from None
    try:
        body = KeypointsRequest.model_validate(document)
    except ValidationError as exc:
        raise validation_problem(exc, "keypoints request") from None
    xy, scores = keypoint_array(body.keypoints_2d, body.image_size, limits)
    return body, xy, scores, frame_times(body.timestamps_s, xy.shape[0])


def frames_of(body: KeypointsRequest, xy: FloatArray, scores: FloatArray, times: list[float]) -> list[KeypointFrame]:
    """One :class:`KeypointFrame` per frame (views into ``xy`` ``(T, 17, 2)`` and ``scores`` ``(T, 17)``)."""
    size = (int(body.image_size[0]), int(body.image_size[1]))
    joints = body.joint_set
    return [
        KeypointFrame(
            keypoints=xy[i], scores=scores[i], image_size=size, joint_set=joints, frame_index=i, timestamp_s=t
        )
        for i, t in enumerate(times)
    ]


def parse_keypoints_body(raw: bytes, settings: GatewaySettings) -> tuple[KeypointsRequest, list[KeypointFrame]]:
    """Blocking: the validated request and its frames (see :func:`parse_keypoints_fields`)."""
    body, xy, scores, times = parse_keypoints_fields(raw, settings.limits)
    return body, frames_of(body, xy, scores, times)


@dataclass
class JobSource:
    """The frames of a job in order, taken in chunks: ``(engine frame, source frame index)``; the engine frame's
    ``frame_index`` is its position (0, 1, 2, ...). ``total``: frames expected (a clip's header may be off)."""

    options: EstimateOptions
    total: int | None
    _frames: Iterator[tuple[Frame, int]]
    _reader: ClipReader | None = None
    _position: int = field(default=0)

    async def take(self, n: int) -> list[tuple[Frame, int]]:
        """Up to ``n`` next frames (decoded on a worker thread); empty at the end."""
        return await asyncio.to_thread(self._take, n)

    def _take(self, n: int) -> list[tuple[Frame, int]]:
        out: list[tuple[Frame, int]] = []
        for item in self._frames:
            out.append(item)
            if len(out) >= n:
                break
        return out

    async def aclose(self) -> None:
        if self._reader is not None:
            await asyncio.to_thread(self._reader.close)


def _clip_frames(reader: ClipReader) -> Iterator[tuple[Frame, int]]:
    decoded: DecodedFrame
    for position, decoded in enumerate(reader.frames()):
        yield ImageFrame(image=decoded.image, frame_index=position, timestamp_s=decoded.timestamp_s), decoded.index


def _renumbered(frames: list[KeypointFrame]) -> Iterator[tuple[Frame, int]]:
    for position, frame in enumerate(frames):
        yield frame, position


async def open_source(kind: str, params: dict[str, Any], staged: bytes, settings: GatewaySettings) -> JobSource:
    """The job's frames and options from what was staged at submission."""
    model = str(params["model"])
    if kind == "keypoints":
        body, frames = await asyncio.to_thread(parse_keypoints_body, staged, settings)
        return JobSource(keypoint_options(body, model), len(frames), _renumbered(frames))
    options, every_nth = clip_options(dict(params["fields"]), settings, model)
    media = MediaKind(params["media"])
    reader = await asyncio.to_thread(ClipReader, io.BytesIO(staged), media, settings.limits, every_nth)
    count = reader.info.frame_count
    total = None if count is None else -(-count // every_nth)
    return JobSource(options, total, _clip_frames(reader), reader)
