"""Redis restarted (or down) in the middle of a clip POST: a retryable 503 with Retry-After, never a 404 that names
the clip's internal stream (issue 10: ``404 unknown-stream "stream 'clip-…' does not exist or has expired"``).

As deployed: the gateway's app over a RemoteEngineClient, a worker (in-process engine) whose frame buffer is a
real redis-server; the gateway sends a clip encoded to the worker, which decodes it and pushes it into a private
stream in chunks of 8 frames (the embedded engine keeps a posted clip's stream in memory, where a Redis restart
cannot reach it).

Deterministic: Redis is restarted (or stopped) between two chunks, from a hook on the clip's decoded frames (the
worker's decoder hands over frame 8, which starts the second chunk, only once Redis has been restarted), not after
a sleep. A
keypoint sequence longer than the engine's queue (run in chunks through a private stream) is checked the same way,
between two chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from service.config import EngineSettings
from service.engine.clips import ClipDecoder
from service.engine.inprocess import build_engine
from service.engine.types import Progress, Work
from service.gateway.app import create_app
from service.metrics import Metrics
from service.rpc.remote_engine import RemoteEngineClient
from tests.conftest import RedisServer
from tests.service.media_samples import encode_clip
from tests.service.rest_support import assert_problem, tiny_settings
from tests.service.test_long_keypoints import body
from tests.service.worker_support import serve_worker

pytestmark = [pytest.mark.slow, pytest.mark.redis]

FRAMES = 16
RESTART_BEFORE = 8  # the frame (clip) or chunk (keypoints) the engine gets only after the restart


class RestartableRedis(RedisServer):
    """A redis-server of our own that restarts on its port, losing every key."""

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableRedis]:
    server = RestartableRedis(tmp_path_factory.mktemp("redis-restart"))
    yield server
    server.stop()


@dataclass
class Deployed:
    """The gateway's app over a RemoteEngineClient, a worker (in-process engine, frame buffer in ``redis``)."""

    http: httpx.AsyncClient
    remote: RemoteEngineClient


@pytest.fixture
async def deployed(redis: RestartableRedis) -> AsyncIterator[Deployed]:
    settings = tiny_settings(redis_url=redis.url, engine=EngineSettings(max_queue=16, request_timeout_s=600.0))
    engine = await build_engine(settings, Metrics())
    server, _, address = await serve_worker(engine)
    remote = RemoteEngineClient([address])
    await remote.start()
    app = create_app(settings.model_copy(update={"redis_url": ""}), engine=remote)  # jobs: not under test
    app.state.gateway.engine = remote  # what the lifespan does (ASGITransport runs no lifespan)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=600) as http:
            yield Deployed(http, remote)
    finally:
        await remote.aclose()
        await server.stop(0)
        await engine.aclose()


@pytest.fixture(params=["restarted", "down"])
def disrupt(request: pytest.FixtureRequest, redis: RestartableRedis) -> Iterator[Callable[[], None]]:
    """Restart Redis (it comes back empty), or stop it (it is started again after the response)."""
    yield redis.restart if request.param == "restarted" else redis.stop
    if redis.proc.poll() is not None:
        redis.start()


def assert_retryable(response: httpx.Response) -> None:
    print(response.status_code, "Retry-After:", response.headers.get("retry-after"), response.text)
    assert_problem(response, 503, "unavailable")  # the detail is the generic one (disclosure policy)
    assert int(response.headers["retry-after"]) >= 1
    assert "clip-" not in response.text
    assert "kp-" not in response.text


async def test_redis_restart_between_two_chunks_of_a_clip_post(
    deployed: Deployed, disrupt: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ClipDecoder.decoded

    def disrupted(self: ClipDecoder) -> AsyncIterator[Any]:
        async def frames() -> AsyncIterator[Any]:
            count = 0
            async for frame in original(self):
                if count == RESTART_BEFORE:
                    await asyncio.to_thread(disrupt)
                count += 1
                yield frame

        return frames()

    monkeypatch.setattr(ClipDecoder, "decoded", disrupted)
    clip = encode_clip(frames=FRAMES)
    files = {"file": ("c.mp4", clip, "video/mp4")}
    assert_retryable(await deployed.http.post("/v1/pose3d", files=files))
    monkeypatch.undo()
    if disrupt.__name__ == "stop":
        return  # Redis is still down: the retry is the restarted case's
    again = await deployed.http.post("/v1/pose3d", files=files)
    assert again.status_code == 200, again.text  # the retry the 503 asks for succeeds
    assert len(again.json()["frames"]) == FRAMES


async def test_redis_restart_between_two_chunks_of_a_long_keypoint_sequence(
    deployed: Deployed, disrupt: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = deployed.remote.submit
    pushed: list[int] = []

    async def submit(work: Work) -> AsyncGenerator[Progress]:
        async for step in original(work):
            if (work.stream or "").startswith("kp-") and step.summary is None:
                if len(pushed) == RESTART_BEFORE:
                    await asyncio.to_thread(disrupt)
                pushed.append(len(step.results))
            yield step

    monkeypatch.setattr(deployed.remote, "submit", submit)
    response = await deployed.http.post("/v1/pose3d", json=body(200))  # chunks of 8 frames: the queue holds 16
    assert len(pushed) > RESTART_BEFORE, pushed
    assert_retryable(response)
