"""``?format=json|jsonl|csv|bvh`` (exports) and ``?render=png|mp4`` (renders) on ``POST /v1/pose3d``.

The JSON result is encoded on a thread (:mod:`service.gateway.encoding`); exports and renders run in a bounded
thread pool (``render_workers`` running, ``render_queue`` waiting, one more: 503 + Retry-After), so neither the event
loop nor the engine waits for them. All of it within the request's deadline: past it the answer is 504 and the
render or export stops at its next frame.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from service.api.media import SNIFF_BYTES, decode_image, sniff_media
from service.api.validation import parse_int
from service.engine.clips import UPLOAD_DEMUX_OPTIONS
from service.errors import BadRequest, DeadlineExceeded, InvalidInput, Unavailable
from service.export.formats import ExportError, ExportFormat, export_document
from service.gateway.encoding import PoseAnswer, encode_answer, pieces
from service.gateway.jobs.results import NDJSON, wants_ndjson

T = TypeVar("T")

Check = Callable[[], None]
"""Called by pool work between its steps (each frame): raises once no one waits for the work any more (the request's
deadline passed), so that the thread stops there."""


class OutputPool:
    """The app's bounded pool for exports and renders (``app.state.output_pool``, made by ``create_app``)."""

    def __init__(self, workers: int, queue: int, retry_after_s: float) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pose3d-render")
        self._capacity = workers + queue
        self._admitted = 0  # work queued or running, until its thread is done with it
        self._lock = threading.Lock()
        self._retry_after_s = retry_after_s

    async def run(self, fn: Callable[[Check], T]) -> T:
        """``fn(check)`` on a pool thread; 503 when the pool and its queue are full. When the caller stops waiting
        (cancelled: its deadline passed), queued work never starts and running work's next ``check()`` raises, so
        it stops; its place in the pool is free only once its thread is."""
        with self._lock:
            if self._admitted >= self._capacity:
                raise Unavailable("the render/export pool is busy; retry shortly", retry_after_s=self._retry_after_s)
            self._admitted += 1
        stopped = threading.Event()

        def check() -> None:
            if stopped.is_set():
                raise DeadlineExceeded("no one waits for this render or export any more")

        try:
            future = self._executor.submit(fn, check)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            stopped.set()
            raise

    def _release(self, _: Future[Any] | None = None) -> None:
        with self._lock:
            self._admitted -= 1


def output_pool(request: Request) -> OutputPool:
    pool: OutputPool = request.app.state.output_pool
    return pool


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


OUTPUT_PARAMETERS: list[dict[str, Any]] = [
    _query(
        "format",
        {"type": "string", "enum": [f.value for f in ExportFormat], "default": "json"},
        "json (default), jsonl (one frame per line), csv (frame × person × joint rows), "
        "bvh (one per track: a .bvh, or a .zip when several; see README)",
    ),
    _query(
        "render",
        {"type": "string", "enum": ["png", "mp4"]},
        "png: the first frame's 2D overlay beside the 3D skeleton (image/png); mp4: every result frame "
        "as an H.264 video (video/mp4). Not together with format.",
    ),
    _query("track", {"type": "integer", "minimum": 0}, "format=bvh: only this track id (a single .bvh)"),
]


class RenderKind(StrEnum):
    PNG = "png"
    MP4 = "mp4"


@dataclass(frozen=True)
class OutputRequest:
    """What the client asked to get back: an export format (for BVH optionally one track), or a render."""

    fmt: ExportFormat = ExportFormat.JSON
    track: int | None = None
    render: RenderKind | None = None


def output_request(request: Request) -> OutputRequest:
    """The query parameters, checked before any body is read (unknown values, or an export or a render asked
    together with ``Accept: application/x-ndjson`` → 400)."""
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
    raw_render = query.get("render")
    try:
        render = RenderKind(raw_render.lower()) if raw_render else None
    except ValueError:
        raise BadRequest(f"render must be png or mp4, not {raw_render!r}") from None
    if render is not None and raw_format:
        raise BadRequest("ask for either render or format, not both")
    if wants_ndjson(request) and (render is not None or fmt is not ExportFormat.JSON):
        raise BadRequest(f"ask for either Accept: {NDJSON} (each frame as it completes) or a render or an export "
                         "(format other than json), not both")  # fmt: skip
    return OutputRequest(fmt=fmt, track=track, render=render)


async def deliver(request: Request, answer: PoseAnswer, wanted: OutputRequest) -> Response:
    """The JSON document, else the export as a download (422 when it cannot be made), or the render; every one
    encoded on a thread (JSON) or in the output pool (exports, renders), never on the event loop."""
    if wanted.render is not None:
        return await _render(request, answer, wanted.render)
    if wanted.fmt is ExportFormat.JSON:
        return StreamingResponse(pieces(await asyncio.to_thread(encode_answer, answer)), media_type="application/json")

    def make(check: Check) -> Any:
        document = answer.to_document()
        return export_document(document, wanted.fmt, wanted.track, f"pose3d_{answer.request_id[:8]}", check)

    try:
        exported = await output_pool(request).run(make)
    except ExportError as exc:
        raise InvalidInput(str(exc)) from None
    headers = {"Content-Disposition": f'attachment; filename="{exported.filename}"'}
    if errors := exported.bvh_max_error_m:
        headers["X-Pose3D-BVH-Max-Error-M"] = ", ".join(f"{tid}={err:.3g}" for tid, err in sorted(errors.items()))
    return Response(exported.content, media_type=exported.media_type, headers=headers)


async def _source_bytes(request: Request) -> bytes | None:
    """The uploaded file again (the form is cached by the request), or None for a JSON keypoints request."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return None
    upload = (await request.form()).get("file")
    if isinstance(upload, str) or upload is None:
        return None
    await upload.seek(0)
    return await upload.read()


async def _render(request: Request, answer: PoseAnswer, kind: RenderKind) -> Response:
    """The PNG (first frame) or MP4 (every frame) of the result over its source, rendered in the output pool."""
    from service.render.compose import RenderError, render_mp4, render_png
    from service.render.video import clip_frames

    limits = request.app.state.settings.limits
    data = await _source_bytes(request)
    if not answer.frames:
        raise InvalidInput("the result has no frame to render")
    is_image = data is not None and sniff_media(data[:SNIFF_BYTES]).is_image
    random = answer.model.random_weights

    def make(check: Check) -> bytes:
        frames: list[dict[str, Any]] = answer.to_document()["frames"]
        video: Iterable[tuple[int, npt.NDArray[np.uint8]]] = ()  # the source's frames (none for keypoints)
        if data is not None and is_image:
            video = [(0, decode_image(data, limits))]
        elif data is not None:  # demuxed with no protocol allowed: no file or URL the clip names is opened
            video = clip_frames(io.BytesIO(data), dict(UPLOAD_DEMUX_OPTIONS))
        if kind is RenderKind.PNG:  # over the source frame of the first result (an image's one frame)
            first = 0 if is_image else frames[0]["frame_index"]
            return render_png(frames[0], next((img for i, img in video if i == first), None), random=random)
        out = io.BytesIO()
        render_mp4(frames, video if data is not None else None, out, progress=lambda _: check(), random=random)
        return out.getvalue()

    try:
        content = await output_pool(request).run(make)
    except RenderError as exc:
        raise InvalidInput(str(exc)) from None
    media_type = "image/png" if kind is RenderKind.PNG else "video/mp4"
    filename = f"pose3d_{answer.request_id[:8]}.{kind.value}"
    return Response(content, media_type=media_type, headers={"Content-Disposition": f'inline; filename="{filename}"'})
