"""The helper process that parses large keypoint bodies (:mod:`service.api.json_offload`) can die (the kernel's
OOM killer, a crash): the next large body must not fail with a 500 for as long as the gateway lives."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from service.api import json_offload
from service.errors import Pose3DError, Unavailable
from tests.service.rest_support import tiny_settings

FRAMES = 4000


def large_body() -> bytes:
    pose = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]
    raw = json.dumps({"keypoints_2d": [pose] * FRAMES, "image_size": [640, 480], "model": "pstmo-9"}).encode()
    assert len(raw) > json_offload.INLINE_BYTES  # parsed in the helper process
    return raw


def kill_helper() -> None:
    pool = json_offload._pool
    assert pool is not None
    for pid, process in list(pool._processes.items()):  # the helper, as the pool knows it
        os.kill(pid, signal.SIGKILL)
        process.join()  # gone before the next body is sent


def test_a_dead_helper_is_replaced_and_large_bodies_parse_again() -> None:
    base = tiny_settings()
    settings = base.model_copy(update={"limits": base.limits.model_copy(update={"max_clip_frames": FRAMES})})
    raw = large_body()

    async def parse() -> int:
        return len((await json_offload.parse_keypoints(raw, settings))[1])

    assert asyncio.run(parse()) == FRAMES
    kill_helper()
    with pytest.raises(Unavailable) as refused:  # the body in flight when the helper died: send it again
        asyncio.run(parse())
    assert refused.value.retry_after_s is not None
    assert asyncio.run(parse()) == FRAMES  # a new helper parses the next one


def test_a_large_body_is_refused_with_the_same_problem_as_a_small_one() -> None:
    """A body parsed in the helper answers the mistake a small body would: the same class, detail and field
    ``errors`` (the 422's ``errors`` member used to be lost on the way back from the helper)."""
    base = tiny_settings()
    settings = base.model_copy(update={"limits": base.limits.model_copy(update={"max_clip_frames": FRAMES})})
    pose = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]

    def refusal(frames: int) -> Pose3DError:
        raw = json.dumps({"keypoints_2d": [pose] * frames, "image_size": [0, 480], "model": "pstmo-9"}).encode()
        with pytest.raises(Pose3DError) as info:
            asyncio.run(json_offload.parse_keypoints(raw, settings))
        return info.value

    small, large = refusal(2), refusal(FRAMES)
    assert (type(large), large.detail) == (type(small), small.detail)
    assert getattr(small, "extensions", None) is not None  # the field errors of a pydantic validation
    assert getattr(large, "extensions", None) == getattr(small, "extensions", None)
