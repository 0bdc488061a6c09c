"""REST streams with the frame buffer in a real redis-server: same poses as the clip posted whole; idle expiry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from service.config import EngineSettings
from service.engine.framebuffer.redis import stream_keys
from tests.conftest import RedisServer
from tests.service.media_samples import encode_clip, encode_image
from tests.service.rest_support import LiveServer, assert_problem, live_server, tiny_settings
from tests.service.test_rest import _decoded_frames, _poses

pytestmark = [pytest.mark.slow, pytest.mark.redis]


# long enough that a busy machine posts a whole clip's frames before an idle gap expires the stream
STREAM_TTL_S = 8.0


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[LiveServer]:
    engine = EngineSettings(max_batch_size=16, max_delay_ms=2.0, request_timeout_s=600.0, stream_ttl_s=STREAM_TTL_S)
    with live_server(tiny_settings(redis_url=redis_server.url, engine=engine)) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def test_ready_with_redis(client: httpx.Client) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert any("redis" in value.lower() for value in ready.json()["detail"].values()), ready.json()


def test_redis_stream_equals_the_clip_posted_whole(client: httpx.Client) -> None:
    clip = encode_clip(frames=10)
    whole = client.post("/v1/pose3d", files={"file": ("c.mp4", clip, "video/mp4")})
    assert whole.status_code == 200, whole.text
    stream_id = client.post("/v1/streams", json={"model": "pstmo-9"}).json()["stream_id"]
    streamed: list[Any] = []
    for i, image in enumerate(_decoded_frames(clip)):
        files = {"file": ("f.png", encode_image(image, ".png"), "image/png")}
        response = client.post(f"/v1/streams/{stream_id}/frames", files=files, data={"frame_index": str(i)})
        assert response.status_code == 200, response.text
        streamed.extend(response.json()["frames"])
    tail = client.delete(f"/v1/streams/{stream_id}")
    assert tail.status_code == 200, tail.text
    streamed.extend(tail.json()["frames"])
    np.testing.assert_allclose(_poses(streamed), _poses(whole.json()["frames"]), atol=1e-4)


def test_idle_streams_expire(client: httpx.Client) -> None:
    stream_id = client.post("/v1/streams", json={}).json()["stream_id"]
    assert client.get(f"/v1/streams/{stream_id}").status_code == 200
    time.sleep(STREAM_TTL_S)  # idle for the whole ttl; then expiry is polled for (Redis expires lazily/actively)
    for _ in range(600):
        response = client.get(f"/v1/streams/{stream_id}")
        if response.status_code == 404:
            break
        time.sleep(0.1)
    assert_problem(response, 404, "unknown-stream")


def test_a_stream_whose_frames_redis_lost_answers_410(client: httpx.Client, redis_server: RedisServer) -> None:
    """Its frames evicted (the stream's meta kept): the push completing a lost frame is a 410, never a 200 without
    that frame's pose."""
    stream_id = client.post("/v1/streams", json={"model": "pstmo-9"}).json()["stream_id"]  # 4 frames of lag
    kp = [[320.0 + 4 * j, 180.0 + 10 * j] for j in range(17)]
    for i in range(4):
        frame = {"keypoints_2d": kp, "image_size": [640, 480], "frame_index": i}
        assert client.post(f"/v1/streams/{stream_id}/frames", json=frame).json()["frames"] == []
    with redis.Redis.from_url(redis_server.url) as store:
        assert store.delete(stream_keys(stream_id)[1]) == 1  # what eviction under maxmemory does
    frame = {"keypoints_2d": kp, "image_size": [640, 480], "frame_index": 4}
    assert_problem(client.post(f"/v1/streams/{stream_id}/frames", json=frame), 410, "stream-frames-lost")
