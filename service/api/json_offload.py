"""Large JSON keypoint bodies are parsed in a helper process, so that no body stalls the event loop.

``json.loads`` and pydantic hold the GIL, so on a thread they still freeze the loop (docs/jobs.md). Bodies past
:data:`INLINE_BYTES` go to one ``forkserver`` helper that parses, validates, applies the frame limit and returns only
the numeric arrays; small bodies parse inline. The body size limit is enforced earlier, as the body arrives.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Final, overload

from pydantic import ValidationError

from model.joints import JointSet
from service.api.schemas import KeypointsRequest
from service.api.validation import ValidationProblem, frame_times, keypoint_array, validation_problem
from service.config import GatewaySettings, LimitSettings
from service.engine.types import FloatArray, KeypointFrame
from service.errors import BadRequest, InvalidInput, Pose3DError, Unavailable, error_class

INLINE_BYTES: Final = 1024 * 1024
"""Bodies up to this size are parsed on the event loop's thread (milliseconds)."""

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


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


@dataclass(frozen=True, eq=False)
class KeypointFrames(Sequence[KeypointFrame]):
    """A keypoint sequence as its arrays: ``xy`` ``(T, 17, 2)`` pixels, ``scores`` ``(T, 17)``, ``times`` ``T``
    seconds. The :class:`KeypointFrame` of a position (a view into the arrays) is built when it is read, so a
    20 000-frame request holds three objects, not 20 000 for the garbage collector to walk in every full pass (a
    pass holds the GIL, and so the event loop, for as long as it walks)."""

    xy: FloatArray
    scores: FloatArray
    times: list[float]
    image_size: tuple[int, int]
    joint_set: JointSet

    @classmethod
    def of(cls, body: KeypointsRequest, xy: FloatArray, scores: FloatArray, times: list[float]) -> KeypointFrames:
        return cls(xy, scores, times, (int(body.image_size[0]), int(body.image_size[1])), body.joint_set)

    def __len__(self) -> int:
        return len(self.times)

    @overload
    def __getitem__(self, index: int) -> KeypointFrame: ...
    @overload
    def __getitem__(self, index: slice) -> list[KeypointFrame]: ...
    def __getitem__(self, index: int | slice) -> KeypointFrame | list[KeypointFrame]:
        if isinstance(index, slice):
            return [self._frame(i) for i in range(*index.indices(len(self)))]
        return self._frame(range(len(self))[index])

    def _frame(self, i: int) -> KeypointFrame:
        return KeypointFrame(self.xy[i], self.scores[i], self.image_size, self.joint_set, i, self.times[i])


def _executor() -> ProcessPoolExecutor:
    """The helper, started (blocking: call it on a thread — starting a process must not block the loop)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("forkserver"))
            pool.submit(int, 0).result()  # the process exists before any caller on the loop submits
            _pool = pool
        return _pool


def _discard(pool: ProcessPoolExecutor) -> None:
    """Forget ``pool`` once its process has died (the OOM killer, a crash), so that the next large body starts a
    new helper instead of failing on the broken one for as long as the gateway lives."""
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def _parse_slim(raw: bytes, limits: LimitSettings) -> tuple[str, Any]:
    """In the helper process: ``("ok", (body without keypoints, xy, scores, times))`` or ``("error", (status,
    type slug, detail, field errors or None))``. Only arrays and a small model cross the pipe, never millions of
    Python floats."""
    try:
        body, xy, scores, times = parse_keypoints_fields(raw, limits)
    except Pose3DError as exc:
        errors = exc.extensions["errors"] if isinstance(exc, ValidationProblem) else None
        return "error", (exc.status, exc.type_slug, exc.detail, errors)
    return "ok", (body.model_copy(update={"keypoints_2d": []}), xy, scores, times)


async def parse_keypoints(raw: bytes, settings: GatewaySettings) -> tuple[KeypointsRequest, KeypointFrames]:
    """The validated keypoints request (its ``keypoints_2d`` emptied when parsed in the helper) and its frames;
    400 not JSON, 413 too many frames, 422 bad values — as ``POST /v1/pose3d`` always answered."""
    if len(raw) <= INLINE_BYTES:
        body, xy, scores, times = parse_keypoints_fields(raw, settings.limits)
    else:
        pool = _pool if _pool is not None else await asyncio.to_thread(_executor)
        try:
            status, value = await asyncio.get_running_loop().run_in_executor(pool, _parse_slim, raw, settings.limits)
        except BrokenProcessPool:
            await asyncio.to_thread(_discard, pool)  # its lock may be held while a new helper starts
            raise Unavailable(
                "the keypoint parser process stopped while it read this body; send it again",
                retry_after_s=settings.limits.retry_after_s,
            ) from None
        if status == "error":
            code, slug, detail, errors = value
            if errors is not None:  # the 422 of a pydantic validation, with its field errors
                raise ValidationProblem(str(detail), errors)
            raise (error_class(str(slug), int(code)) or InvalidInput)(str(detail))
        body, xy, scores, times = value
    return body, KeypointFrames.of(body, xy, scores, times)
