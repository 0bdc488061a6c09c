"""Output fields a client can get wrong, one live gateway for all: ``smoothing_params`` nested past the parser's depth
(form field), and non-finite parameters (JSON's ``Infinity``, which Python's json reads): a 400/422 problem, never a
500 or a 200 whose joints are ``null``; ``?render=mp4`` of keypoints whose client timestamps give a frame rate no MP4
can hold: a clear 422, not the 500 of the encoder's OverflowError (the rate was handed to it as it came)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.service.media_samples import encode_image, person_image
from tests.service.rest_support import LiveServer, assert_problem, live_server, tiny_settings
from tests.service.test_rest_outputs import keypoints_body

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    live: LiveServer
    with live_server(tiny_settings()) as live, live.client() as http:
        yield http


def test_smoothing_params_nested_too_deep_is_a_bad_request(client: httpx.Client) -> None:
    image = encode_image(person_image())
    fields = {"smoothing": "one_euro", "smoothing_params": "[" * 50_000}  # under the 64 KB form-part limit
    response = client.post("/v1/pose3d", files={"file": ("p.jpg", image, "image/jpeg")}, data=fields)
    assert_problem(response, 400, "bad-request")


@pytest.mark.parametrize("name", ["beta", "min_cutoff_hz", "d_cutoff_hz"])
def test_non_finite_smoothing_params_are_invalid_input(client: httpx.Client, name: str) -> None:
    body = keypoints_body(6)
    body["keypoints_2d"] = [body["keypoints_2d"][0]] * 6  # a person standing still: speed 0, and inf * 0 is NaN
    body |= {"smoothing": "one_euro", "smoothing_params": {name: float("inf")}}
    response = client.post(
        "/v1/pose3d/keypoints", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "invalid-input")
    image = encode_image(person_image())
    fields = {"smoothing": "one_euro", "smoothing_params": json.dumps({name: float("inf")})}
    response = client.post("/v1/pose3d", files={"file": ("p.jpg", image, "image/jpeg")}, data=fields)
    assert_problem(response, 422, "invalid-input")


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
