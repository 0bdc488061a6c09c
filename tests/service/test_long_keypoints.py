"""A keypoint sequence longer than the engine's queue is admitted in bounded chunks (never a 429 that no retry
can satisfy), with the results of the whole sequence run at once."""

from __future__ import annotations

from typing import Any

from service.config import EngineSettings
from tests.service.jobs_support import assert_same_frames
from tests.service.rest_support import live_server, tiny_settings

FRAMES = 150


def body() -> dict[str, Any]:
    poses = [[[320.0 + 4 * j + t, 180.0 + 10 * j, 0.9] for j in range(17)] for t in range(FRAMES)]
    return {"keypoints_2d": poses, "image_size": [640, 480], "model": "pstmo-9"}


def post(max_queue: int) -> dict[str, Any]:
    engine = EngineSettings(max_batch_size=16, max_delay_ms=2.0, request_timeout_s=600.0, max_queue=max_queue)
    with live_server(tiny_settings(engine=engine)) as live, live.client(timeout_s=600) as client:
        response = client.post("/v1/pose3d", json=body())
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def test_a_sequence_longer_than_the_queue_is_run_in_chunks() -> None:
    chunked = post(max_queue=40)  # 150 frames > 40: pushed 20 at a time through a private stream
    whole = post(max_queue=1024)  # one engine.estimate
    assert len(chunked["frames"]) == FRAMES
    assert chunked["box_source"] == whole["box_source"] == "keypoints"
    assert chunked["model"] == whole["model"]
    assert_same_frames(chunked["frames"], whole["frames"])
