"""``?format=json|jsonl|csv|bvh`` (exports) and ``?render=png|mp4`` (renders) on ``POST /v1/pose3d``.

The JSON result is made as usual; these turn it into a file in the bounded output pool
(:mod:`service.gateway.output_pool`), so neither the event loop nor the engine waits for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response

from service.errors import BadRequest, InvalidInput
from service.export.formats import ExportError, ExportFormat, export_document
from service.gateway.output_pool import output_pool
from service.gateway.schemas import PoseResponse
from service.gateway.validation import parse_int

OUTPUT_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "format",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": [f.value for f in ExportFormat], "default": "json"},
        "description": "json (default), jsonl (one frame per line), csv (frame × person × joint rows), "
        "bvh (one per track: a .bvh, or a .zip when several; see README)",
    },
    {
        "name": "track",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 0},
        "description": "format=bvh: only this track id (a single .bvh)",
    },
]


@dataclass(frozen=True)
class OutputRequest:
    """What the client asked to get back: an export format, and for BVH optionally one track."""

    fmt: ExportFormat = ExportFormat.JSON
    track: int | None = None


def output_request(request: Request) -> OutputRequest:
    """The query parameters, checked before any body is read (unknown values → 400)."""
    query = request.query_params
    raw_format = query.get("format")
    try:
        fmt = ExportFormat(raw_format.lower()) if raw_format else ExportFormat.JSON
    except ValueError:
        choices = ", ".join(f.value for f in ExportFormat)
        raise BadRequest(f"format must be one of {choices}, not {raw_format!r}") from None
    track = parse_int("track", query.get("track"), 0, 2**31 - 1)
    if track is not None and fmt is not ExportFormat.BVH:
        raise BadRequest("'track' only applies to format=bvh")
    return OutputRequest(fmt=fmt, track=track)


def _bvh_header(errors: dict[int, float]) -> dict[str, str]:
    if not errors:
        return {}
    return {"X-Pose3D-BVH-Max-Error-M": ", ".join(f"{tid}={err:.3g}" for tid, err in sorted(errors.items()))}


async def deliver(request: Request, response: PoseResponse, wanted: OutputRequest) -> PoseResponse | Response:
    """``response`` itself for JSON, else the export as a download (422 when it cannot be made)."""
    if wanted.fmt is ExportFormat.JSON:
        return response
    document = response.model_dump(mode="json")

    def make() -> Any:
        return export_document(document, wanted.fmt, wanted.track, stem=f"pose3d_{response.request_id[:8]}")

    try:
        exported = await output_pool(request).run(make)
    except ExportError as exc:
        raise InvalidInput(str(exc)) from None
    headers = {"Content-Disposition": f'attachment; filename="{exported.filename}"'}
    headers.update(_bvh_header(exported.bvh_max_error_m))
    return Response(exported.content, media_type=exported.media_type, headers=headers)
