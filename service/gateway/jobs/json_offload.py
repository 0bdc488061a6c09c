"""Large JSON keypoint bodies are parsed in a helper process, so that no body stalls the event loop.

``json.loads`` and pydantic validation run in C/Rust holding the GIL: on a thread they still freeze the loop
for the whole parse (a 36 MB body froze ``/healthz`` for 16 s). Bodies past :data:`INLINE_BYTES` go to one
helper process (``forkserver``: a clean process, started on first use) that parses, validates, applies the frame
limit and returns only the numeric arrays; the loop only copies bytes. Small bodies parse inline (faster than a
round trip). The body size limit is enforced earlier, as the body arrives (``GatewayGuard``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Final

from service.config import GatewaySettings, LimitSettings
from service.engine.types import KeypointFrame
from service.errors import BadRequest, InvalidInput, PayloadTooLarge, Pose3DError
from service.gateway.schemas import KeypointsRequest

INLINE_BYTES: Final = 1024 * 1024
"""Bodies up to this size are parsed on the event loop's thread (milliseconds)."""

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
_ERRORS: Final[dict[int, type[Pose3DError]]] = {400: BadRequest, 413: PayloadTooLarge, 422: InvalidInput}


def _executor() -> ProcessPoolExecutor:
    """The helper, started (blocking: call it on a thread — starting a process must not block the loop)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("forkserver"))
            pool.submit(int, 0).result()  # the process exists before any caller on the loop submits
            _pool = pool
        return _pool


def _parse_slim(raw: bytes, limits: LimitSettings) -> tuple[str, Any]:
    """In the helper process: ``("ok", (body without keypoints, xy, scores, times))`` or ``("error", (status,
    detail))``. Only arrays and a small model cross the pipe, never millions of Python floats."""
    from service.gateway.jobs.sources import parse_keypoints_fields

    try:
        body, xy, scores, times = parse_keypoints_fields(raw, limits)
    except Pose3DError as exc:
        return "error", (exc.status, exc.detail)
    return "ok", (body.model_copy(update={"keypoints_2d": []}), xy, scores, times)


async def parse_keypoints(raw: bytes, settings: GatewaySettings) -> tuple[KeypointsRequest, list[KeypointFrame]]:
    """The validated keypoints request (its ``keypoints_2d`` emptied when parsed in the helper) and its frames;
    400 not JSON, 413 too many frames, 422 bad values — as ``POST /v1/pose3d`` always answered."""
    from service.gateway.jobs.sources import frames_of, parse_keypoints_fields

    if len(raw) <= INLINE_BYTES:
        body, xy, scores, times = parse_keypoints_fields(raw, settings.limits)
        return body, frames_of(body, xy, scores, times)
    return await _in_helper(_parse_slim, raw, settings)


async def _in_helper(
    parse: Callable[[Any, LimitSettings], tuple[str, Any]], data: Any, settings: GatewaySettings
) -> tuple[KeypointsRequest, list[KeypointFrame]]:
    from service.gateway.jobs.sources import frames_of

    pool = _pool if _pool is not None else await asyncio.to_thread(_executor)
    loop = asyncio.get_running_loop()
    status, value = await loop.run_in_executor(pool, parse, data, settings.limits)
    if status == "error":
        code, detail = value
        raise _ERRORS.get(int(code), InvalidInput)(str(detail))
    body, xy, scores, times = value
    return body, frames_of(body, xy, scores, times)
