"""``?render=mp4`` of keypoints whose client timestamps give a frame rate no MP4 can hold: a clear 422, not the 500
of the encoder's OverflowError (the rate was handed to it as it came)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.service.rest_support import LiveServer, assert_problem, live_server, tiny_settings
from tests.service.test_rest_outputs import keypoints_body

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    live: LiveServer
    with live_server(tiny_settings()) as live, live.client() as http:
        yield http


def with_times(times: list[float]) -> dict[str, Any]:
    return {**keypoints_body(len(times)), "timestamps_s": times}


@pytest.mark.parametrize("step_s", [1e-10, 1e-300], ids=["10-ghz", "1e300-hz"])
def test_timestamps_too_close_for_a_video_are_a_client_error(client: httpx.Client, step_s: float) -> None:
    response = client.post("/v1/pose3d?render=mp4", json=with_times([0.0, step_s, 2 * step_s]))
    assert_problem(response, 422, "invalid-input")
    assert "frames per second" in response.json()["detail"]


def test_close_timestamps_a_video_can_hold_still_render(client: httpx.Client) -> None:
    response = client.post("/v1/pose3d?render=mp4", json=with_times([0.0, 1e-6, 2e-6]))  # 1 MHz: representable
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
