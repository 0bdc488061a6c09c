"""``/v1/streams/ws``: a stream over one WebSocket, for browsers (which cannot speak gRPC bidi streaming).

The REST streams' semantics, limits and problem details as JSON text messages (``open`` → ``opened``, ``frame`` →
``results``, ``close`` → the final ``results`` and close 1000; docs/api.md). An error sends ``{"type": "problem"}``
and closes with ``4000 + status`` (4401 without a valid key, or within ``security.api_keys_check_s`` of its
revocation; 4429 when its quota is spent: every ``frame`` spends one token). The next message is read only once
the previous one is answered, so a fast client waits on its own socket (uvicorn's ``ws_max_queue``/``ws_max_size``
bound what it buffers).
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import secrets
import time
from typing import Any, Final

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.api import streams
from service.api.fields import world_warnings
from service.api.media import Media, checked_image
from service.api.schemas import MAX_FRAME_INDEX, StreamFrameKeypoints, StreamOpenRequest
from service.api.schemas import Frame as FrameOut
from service.api.validation import stream_keypoint_frame, validation_problem
from service.config import LimitSettings
from service.engine.types import EngineClient, Frame, ImageFrame
from service.engine.work import close, push
from service.errors import BadRequest, InternalError, PayloadTooLarge, Pose3DError
from service.gateway.deps import GatewayState, loaded, within
from service.gateway.problem import problem_message
from service.security import door
from service.security.guard import Security

log = logging.getLogger("pose3d.gateway.ws")

router = APIRouter()

WS_PATH = "/v1/streams/ws"

OFF_LOOP_CHARS: Final = 256 * 1024
"""Messages (and images) at least this long are parsed on a worker thread: a 16 MiB image's JSON, base64 and header
are ~60 ms of CPU that would otherwise hold the event loop, and every connection's messages with it. The base64 goes
in pieces; the JSON is one parser call, which keeps the GIL throughout (~1.5 ms per MB of a plain string)."""

LONG_MESSAGE_COMMAS: Final = 1024
"""The most commas (so about the most JSON values) in a message of :data:`OFF_LOOP_CHARS` or more: only an image
frame is that long, and its bulk is one string. More values would be parsed and validated holding the GIL, which a
thread does not release (300 000 keypoint pairs in 3.3 MB: ~1 s), so such a message is refused unparsed (413)."""

BASE64_PIECE: Final = 1024 * 1024
"""Base64 characters decoded per call (a multiple of 4): between two pieces the thread lets the loop run."""


class ImageFrameMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frame_index: int = Field(ge=0, le=MAX_FRAME_INDEX)
    timestamp_s: float | None = Field(None, allow_inf_nan=False, description="seconds (finite)")
    image: str = Field(description="base64 of a JPEG/PNG/WebP frame (a data: URL prefix is accepted)")
    detect_people: bool = Field(False, description="run the person detector on this frame (see REST streams)")


def _document(text: str) -> dict[str, Any]:
    """One message's JSON object, with a ``type`` (400 otherwise; 413 when long and not an image frame)."""
    if len(text) >= OFF_LOOP_CHARS and text.count(",") > LONG_MESSAGE_COMMAS:
        raise PayloadTooLarge(
            f"a message of {len(text)} characters holds more than {LONG_MESSAGE_COMMAS} values: only an image frame "
            "(its image one base64 string) may be this long"
        )
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise BadRequest("message is not valid JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("type"), str):
        raise BadRequest('every message is a JSON object with a "type": open, frame or close')
    return document


def _base64(encoded: str) -> bytes:
    """The bytes of strict base64 ``encoded`` (400 otherwise), decoded in pieces of :data:`BASE64_PIECE` characters:
    one call for the whole would hold the GIL, and so the event loop, until the last byte."""
    if encoded.find("=", 0, len(encoded) - 2) >= 0 or len(encoded) % 4:  # padding at the end: in the last piece only
        raise BadRequest("'image' is not valid base64")
    try:
        return b"".join(
            binascii.a2b_base64(encoded[at : at + BASE64_PIECE], strict_mode=True)
            for at in range(0, len(encoded), BASE64_PIECE)
        )
    except (binascii.Error, ValueError):
        raise BadRequest("'image' is not valid base64") from None


def image_frame(message: dict[str, Any], limits: LimitSettings) -> ImageFrame:
    """An image ``frame`` message as the engine's frame, checked from its headers (the engine decodes it)."""
    msg: ImageFrameMessage = _validated(ImageFrameMessage, message, "frame message")
    encoded = msg.image.split(",", 1)[1] if msg.image.startswith("data:") else msg.image
    image = checked_image(Media.of(_base64(encoded), "'image'").data, limits)
    return ImageFrame(image.data, msg.frame_index, msg.timestamp_s, msg.detect_people)


def _validated(model: type[BaseModel], message: dict[str, Any], where: str) -> Any:
    """``message`` without its ``type`` as ``model`` (422 with field errors)."""
    try:
        return model.model_validate({k: v for k, v in message.items() if k != "type"})
    except ValidationError as exc:
        raise validation_problem(exc, where) from None


class WsStream:
    """One connection's stream: open, frames, close — every error becomes a problem and a close code."""

    def __init__(self, ws: WebSocket, state: GatewayState, request_id: str, security: Security | None = None) -> None:
        self.ws, self.state, self._engine, self.request_id = ws, state, state.engine, request_id
        self.security = security
        self.limits = state.settings.limits
        self.stream_id: str | None = None

    @property
    def engine(self) -> EngineClient:
        return loaded(self._engine, self.limits.retry_after_s)

    async def receive(self) -> dict[str, Any]:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            raise BadRequest("binary messages are not accepted: send JSON text messages (images as base64)")
        if len(text) > self.limits.max_body_bytes * 4 // 3 + 1024:
            raise PayloadTooLarge(f"message is larger than {self.limits.max_body_bytes} bytes of frame data allow")
        return await asyncio.to_thread(_document, text) if len(text) >= OFF_LOOP_CHARS else _document(text)

    async def open(self, message: dict[str, Any]) -> None:
        if message["type"] != "open":
            raise BadRequest(f'the first message must be {{"type": "open", ...}}, not {message["type"]!r}')
        body: StreamOpenRequest = _validated(StreamOpenRequest, message, "open message")
        opened = await streams.open_stream(self.engine, body, self.state.settings)
        self.stream_id = opened.stream_id
        await self.ws.send_json({"type": "opened", **opened.model_dump(mode="json")})

    async def frame(self, message: dict[str, Any]) -> Frame:
        if "image" not in message:
            body: StreamFrameKeypoints = _validated(StreamFrameKeypoints, message, "frame message")
            return stream_keypoint_frame(body, self.limits)
        if isinstance(message["image"], str) and len(message["image"]) >= OFF_LOOP_CHARS:
            return await asyncio.to_thread(image_frame, message, self.limits)
        return image_frame(message, self.limits)

    async def send_results(self, results: list[Any], started: float, **extra: Any) -> None:
        frames = [FrameOut.of(r).model_dump() for r in sorted(results, key=lambda r: r.frame_index)]
        timings = {"total": round((time.perf_counter() - started) * 1000.0, 3)}
        warnings = world_warnings(None, results)
        await self.ws.send_json(
            {"type": "results", **extra, "frames": frames, "timings_ms": timings, "warnings": warnings}
        )

    async def handle(self, message: dict[str, Any]) -> bool:
        """One message after ``open``; False once the stream is closed."""
        assert self.stream_id is not None
        started = time.perf_counter()
        timeout = self.state.settings.engine.request_timeout_s
        async with within(timeout, f"the frame did not complete within {timeout:g} s"):
            if message["type"] == "close":
                tail = await self.engine.close_stream(self.stream_id)
                self.stream_id = None
                await self.send_results(tail, started, final=True)
                return False
            if message["type"] != "frame":
                raise BadRequest(f'unknown message type {message["type"]!r}: expected "frame" or "close"')
            await door.admit_frame(self.security)  # every frame draws from the key's bucket (4429 when spent)
            frame = await self.frame(message)
            results = await push(self.engine, self.stream_id, [frame], time.monotonic() + timeout)
            await self.send_results(results, started, frame_index=frame.frame_index)
            return True

    async def fail(self, error: Pose3DError) -> None:
        message = problem_message(error, self.request_id, WS_PATH, self.limits.retry_after_s)
        body = message["problem"]
        reason = json.dumps({"type": body["type"], "status": body["status"]}, separators=(",", ":"))
        try:
            await self.ws.send_json(message)
            await self.ws.close(code=4000 + error.status if error.status < 1000 else 1011, reason=reason)
        except (WebSocketDisconnect, RuntimeError):  # the client is gone already
            return

    async def serve(self) -> None:
        """Open, frames, close; any error closes the connection with its code."""
        opening = self.state.settings.grpc_open_timeout_s  # as a StreamEstimate call: no socket is held unopened
        try:
            async with within(opening, f"no `open` message within {opening:g} s of connecting"):
                first = await self.receive()
            await self.open(first)
            while await self.handle(await self.receive()):
                pass
            await self.ws.close(code=1000)
        except WebSocketDisconnect:
            pass
        except Pose3DError as exc:
            await self.fail(exc)
        except Exception:
            log.exception("websocket stream %s: unexpected error", self.request_id)
            await self.fail(InternalError(f"internal error (request id {self.request_id})"))

    async def forget(self) -> None:
        if self.stream_id is not None and self._engine is not None:
            stream_id, self.stream_id = self.stream_id, None
            await close(self.engine, stream_id)


@router.websocket(WS_PATH)
async def stream_socket(ws: WebSocket) -> None:
    """A stream over a WebSocket (see the module docstring for the messages)."""
    state: GatewayState = ws.app.state.gateway
    security: Security | None = getattr(ws.app.state, "security", None)
    await ws.accept()
    session = WsStream(ws, state, secrets.token_hex(16), security)
    served = asyncio.create_task(session.serve())
    watch = asyncio.create_task(door.revoked(security, door.caller()))
    try:
        await asyncio.wait({served, watch}, return_when=asyncio.FIRST_COMPLETED)
        if watch.done():  # the key was revoked: the session ends now (4401)
            served.cancel()
            await asyncio.gather(served, return_exceptions=True)
            await session.fail(watch.result())
    finally:
        watch.cancel()
        served.cancel()
        await asyncio.gather(served, watch, return_exceptions=True)
        await session.forget()
