"""Reading request bodies: content-type dispatch, multipart forms with one ``file``, JSON documents.

The body size is bounded by the guard middleware; here only the shape of the body is checked.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from service.config import LimitSettings
from service.engine.types import ByteImage
from service.errors import BadRequest, UnsupportedMediaType
from service.gateway.media import SNIFF_BYTES, MediaKind, decode_image, sniff_media
from service.gateway.problem import validation_problem
from service.metrics import Metrics
from service.telemetry.tracing import stage_span

Model = TypeVar("Model", bound=BaseModel)

MAX_FORM_FIELDS = 16
MAX_FIELD_BYTES = 64 * 1024


class BodyKind(StrEnum):
    MULTIPART = "multipart"
    JSON = "json"


def body_kind(request: Request) -> BodyKind:
    """``multipart/form-data`` or JSON (``application/json`` / ``*+json``); 415 for anything else."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return BodyKind.MULTIPART
    if media_type == "application/json" or media_type.endswith("+json"):
        return BodyKind.JSON
    shown = media_type or "none"
    raise UnsupportedMediaType(
        f"content type {shown!r} is not accepted: send multipart/form-data (field 'file') or application/json"
    )


async def read_form(request: Request) -> FormData:
    """The multipart form (at most one file and :data:`MAX_FORM_FIELDS` fields; malformed → 400)."""
    form: FormData = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES)
    return form


def form_text(form: FormData, name: str) -> str | None:
    """A text field of ``form``; 400 when a file was sent under that name."""
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"form field {name!r} must be text, not a file")
    return value


@dataclass
class Upload:
    """The ``file`` part: its sniffed kind and the spooled file (read from the start)."""

    kind: MediaKind
    file: UploadFile


async def form_upload(form: FormData) -> Upload:
    """The ``file`` part, sniffed by its first bytes (the client's content type is not trusted)."""
    value = form.get("file")
    if value is None:
        raise BadRequest("multipart body has no 'file' part")
    if not isinstance(value, UploadFile):
        raise BadRequest("'file' must be a file part (with a filename), not a text field")
    await value.seek(0)
    head = await value.read(SNIFF_BYTES)
    if not head:
        raise BadRequest("'file' is empty")
    kind = sniff_media(head)
    await value.seek(0)
    return Upload(kind=kind, file=value)


async def decode_upload_image(upload: Upload, limits: LimitSettings, metrics: Metrics) -> tuple[ByteImage, float]:
    """Decode an uploaded image off the event loop: ``((H, W, 3) uint8 RGB, milliseconds)``."""
    if not upload.kind.is_image:
        raise UnsupportedMediaType(f"expected an image (JPEG, PNG, WebP), got a {upload.kind.value} clip")
    data = await upload.file.read()
    started = time.perf_counter()
    with stage_span("decode"):
        image = await asyncio.to_thread(decode_image, data, limits)
    seconds = time.perf_counter() - started
    metrics.stage_duration.labels("decode").observe(seconds)
    return image, seconds * 1000.0


async def read_json(request: Request, model: type[Model], where: str = "JSON body") -> Model:
    """Parse and validate a JSON body: not JSON → 400, wrong shape or values → 422 with field errors."""
    raw = await request.body()
    try:
        document: Any = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or an integer past Python's digit limit
        raise BadRequest(f"{where} is not valid JSON") from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise validation_problem(exc, where) from None
