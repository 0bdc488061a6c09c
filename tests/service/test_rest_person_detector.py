"""The ONNX person detector configured in settings, through the real gateway: boxes, scores, max_people."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.config import DetectorSettings
from tests.service.media_samples import encode_image, person_image
from tests.service.rest_support import live_server, tiny_settings
from tests.unit.test_person_detector import constant_detector

# canvas pixels of the detector's 64x64 input; a 128x128 image is letterboxed at ratio 0.5
DETS = [
    [4.0, 4.0, 30.0, 60.0, 0.9],  # person
    [34.0, 4.0, 60.0, 60.0, 0.8],  # person
    [0.0, 0.0, 10.0, 10.0, 0.95],  # not a person (label 1)
    [5.0, 5.0, 20.0, 20.0, 0.1],  # below the score threshold
]
LABELS = [0, 0, 1, 0]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    onnx_path = constant_detector(tmp_path_factory.mktemp("onnx") / "det.onnx", DETS, LABELS)
    detector = DetectorSettings(
        arch="hrnet-micro", flip_test=False, person_detector_onnx=Path(onnx_path), person_detector_family="yolox"
    )
    with live_server(tiny_settings(detector=detector)) as server, server.client() as c:
        yield c


def _post(client: httpx.Client, **data: str) -> httpx.Response:
    image = person_image(128, 128, seed=3)
    files = {"file": ("people.png", encode_image(image, ".png"), "image/png")}
    return client.post("/v1/pose3d", files=files, data=data)


@pytest.mark.slow
def test_configured_person_detector_finds_the_people(client: httpx.Client) -> None:
    response = _post(client)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["box_source"] == "detector"
    people = sorted(body["frames"][0]["people"], key=lambda p: p["box"][0])
    assert [p["box"] for p in people] == [
        pytest.approx([8.0, 8.0, 60.0, 120.0], abs=1e-3),
        pytest.approx([68.0, 8.0, 120.0, 120.0], abs=1e-3),
    ]
    assert [p["box_score"] for p in people] == [pytest.approx(0.9), pytest.approx(0.8)]
    assert len({p["track_id"] for p in people}) == 2


@pytest.mark.slow
def test_max_people_keeps_the_best_and_client_boxes_win(client: httpx.Client) -> None:
    (best,) = _post(client, max_people="1").json()["frames"][0]["people"]
    assert best["box_score"] == pytest.approx(0.9)
    given = _post(client, boxes="[[0, 0, 64, 64]]").json()
    assert given["box_source"] == "client"
    assert given["frames"][0]["people"][0]["box"] == pytest.approx([0.0, 0.0, 64.0, 64.0])
