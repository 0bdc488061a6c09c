"""Smoothing fields a client can get wrong: ``smoothing_params`` nested past the parser's depth (form field), and
non-finite parameters (JSON's ``Infinity``, which Python's json reads): a 400/422 problem, never a 500 or a 200
whose joints are ``null``."""

from __future__ import annotations

import json
from collections.abc import Iterator

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
