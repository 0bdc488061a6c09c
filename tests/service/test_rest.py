"""The REST API end to end: a real gateway with the in-process engine (tiny random-weight models) over HTTP."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import av
import httpx
import numpy as np
import pytest

from model.joints import H36M_JOINT_NAMES
from tests.service.media_samples import encode_clip, encode_image, person_image
from tests.service.rest_support import LiveServer, live_server, tiny_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server(tiny_settings()) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def _image_file(ext: str = ".jpg", width: int = 192, height: int = 256) -> dict[str, Any]:
    mime = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}[ext]
    return {"file": (f"frame{ext}", encode_image(person_image(width, height), ext), mime)}


def _clip_file(frames: int = 12, kind: str = "mp4") -> dict[str, Any]:
    return {"file": (f"clip.{kind}", encode_clip(frames=frames, kind=kind), "application/octet-stream")}


def _check_person(person: dict[str, Any]) -> None:
    assert len(person["box"]) == 4
    assert np.asarray(person["keypoints_2d"]).shape == (17, 2)
    assert np.asarray(person["keypoint_scores"]).shape == (17,)
    kp3d = np.asarray(person["keypoints_3d"])
    assert kp3d.shape == (17, 3)
    assert np.isfinite(kp3d).all()
    assert isinstance(person["track_id"], int)


def _check_envelope(body: dict[str, Any], model: str) -> None:
    assert body["model"]["name"] == model
    assert body["model"]["weights"] == "random"
    assert body["model"]["random_weights"] is True
    assert any("RANDOM" in w for w in body["warnings"])
    assert body["joint_names"] == list(H36M_JOINT_NAMES)
    assert body["units"] == "m"
    assert body["coordinate_frame"].startswith("camera (x right, y down, z forward)")
    assert body["timings_ms"]["total"] > 0


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
def test_image(client: httpx.Client, ext: str) -> None:
    response = client.post("/v1/pose3d", files=_image_file(ext), headers={"X-Request-ID": "req-123"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["request_id"] == "req-123"
    assert response.headers["x-request-id"] == "req-123"
    _check_envelope(body, "capf")
    assert body["box_source"] == "whole_frame"
    assert "decode" in body["timings_ms"]
    (frame,) = body["frames"]
    assert frame["frame_index"] == 0
    (person,) = frame["people"]
    _check_person(person)
    assert person["box"] == pytest.approx([0.0, 0.0, 192.0, 256.0], abs=1.0)


def test_multi_person_image_with_boxes(client: httpx.Client) -> None:
    image = np.concatenate([person_image(160, 240, seed=1), person_image(160, 240, seed=2)], axis=1)
    boxes = [[4.0, 8.0, 150.0, 236.0], [168.0, 10.0, 316.0, 232.0]]
    files = {"file": ("two.png", encode_image(image, ".png"), "image/png")}
    response = client.post("/v1/pose3d", files=files, data={"boxes": json.dumps(boxes), "flip_test": "false"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["box_source"] == "client"
    people = body["frames"][0]["people"]
    assert len(people) == 2
    for person in people:
        _check_person(person)
    np.testing.assert_allclose(sorted(p["box"] for p in people), boxes, atol=1e-3)
    assert len({p["track_id"] for p in people}) == 2
    limited = client.post("/v1/pose3d", files=files, data={"boxes": json.dumps(boxes), "max_people": "1"})
    assert limited.status_code == 200, limited.text
    assert len(limited.json()["frames"][0]["people"]) == 1


@pytest.mark.parametrize("kind", ["mp4", "webm", "avi", "mov"])
def test_clip_with_container_timestamps(client: httpx.Client, kind: str) -> None:
    response = client.post("/v1/pose3d", files=_clip_file(12, kind))
    assert response.status_code == 200, response.text
    body = response.json()
    _check_envelope(body, "pstmo-9")
    assert body["box_source"] == "whole_frame"
    frames = body["frames"]
    assert [f["frame_index"] for f in frames] == list(range(12))
    assert [f["timestamp_s"] for f in frames] == pytest.approx([i / 25 for i in range(12)])
    for frame in frames:
        (person,) = frame["people"]
        _check_person(person)
    assert len({f["people"][0]["track_id"] for f in frames}) == 1  # one person, tracked


def test_clip_every_nth_and_named_models(client: httpx.Client) -> None:
    response = client.post("/v1/pose3d", files=_clip_file(12), data={"every_nth": "3", "model": "capf-t3"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["name"] == "capf-t3"
    assert [f["frame_index"] for f in body["frames"]] == [0, 3, 6, 9]
    assert [f["timestamp_s"] for f in body["frames"]] == pytest.approx([0.0, 0.12, 0.24, 0.36])
    single = client.post("/v1/pose3d", files=_clip_file(5), data={"model": "capf"})
    assert single.status_code == 200, single.text
    assert len(single.json()["frames"]) == 5


def _sequence(frames: int) -> list[list[list[float]]]:
    rng = np.random.default_rng(7)
    base = np.array([[320 + 6 * (j % 5), 120 + 14 * j] for j in range(17)], dtype=np.float64)
    return [(base + rng.normal(0, 2, size=base.shape)).round(2).tolist() for _ in range(frames)]


def test_keypoints_json(client: httpx.Client) -> None:
    body = {"keypoints_2d": _sequence(10), "image_size": [640, 480], "joint_set": "coco"}
    response = client.post("/v1/pose3d", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    _check_envelope(result, "pstmo-9")
    assert result["box_source"] == "keypoints"
    assert [f["frame_index"] for f in result["frames"]] == list(range(10))
    for frame in result["frames"]:
        (person,) = frame["people"]
        _check_person(person)
    one = client.post("/v1/pose3d", json={**body, "keypoints_2d": _sequence(1)[0], "joint_set": "h36m"})
    assert one.status_code == 200, one.text
    assert len(one.json()["frames"]) == 1


def _decoded_frames(clip: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(clip), mode="r") as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _stream(client: httpx.Client, model: str, frames: list[dict[str, Any]], mode: str = "centred") -> list[Any]:
    opened = client.post("/v1/streams", json={"model": model, "mode": mode})
    assert opened.status_code == 201, opened.text
    stream_id = opened.json()["stream_id"]
    assert len(stream_id) >= 32
    results: list[Any] = []
    for i, frame in enumerate(frames):
        if "files" in frame:
            response = client.post(f"/v1/streams/{stream_id}/frames", **frame)
        else:
            response = client.post(f"/v1/streams/{stream_id}/frames", json={**frame["json"], "frame_index": i})
        assert response.status_code == 200, response.text
        results.extend(response.json()["frames"])
    status = client.get(f"/v1/streams/{stream_id}")
    assert status.status_code == 200, status.text
    assert status.json()["frames_received"] == len(frames)
    tail = client.delete(f"/v1/streams/{stream_id}")
    assert tail.status_code == 200, tail.text
    results.extend(tail.json()["frames"])
    assert client.get(f"/v1/streams/{stream_id}").status_code == 404
    return results


def _poses(frames: list[Any]) -> np.ndarray:
    return np.asarray(
        [[p["keypoints_3d"] for p in f["people"]] for f in sorted(frames, key=lambda f: f["frame_index"])]
    )


@pytest.mark.parametrize("model", ["pstmo-9", "capf-t3"])
def test_rest_stream_equals_the_clip_posted_whole(client: httpx.Client, model: str) -> None:
    clip = encode_clip(frames=11)
    whole = client.post("/v1/pose3d", files={"file": ("c.mp4", clip, "video/mp4")}, data={"model": model})
    assert whole.status_code == 200, whole.text
    frames = [
        {
            "files": {"file": ("f.png", encode_image(image, ".png"), "image/png")},
            "data": {"frame_index": str(i), "timestamp_s": str(i / 25)},
        }
        for i, image in enumerate(_decoded_frames(clip))
    ]
    streamed = _stream(client, model, frames)
    assert [f["frame_index"] for f in sorted(streamed, key=lambda f: f["frame_index"])] == list(range(11))
    np.testing.assert_allclose(_poses(streamed), _poses(whole.json()["frames"]), atol=1e-4)


def test_keypoint_stream_equals_the_sequence_posted_whole(client: httpx.Client) -> None:
    sequence = _sequence(13)
    whole = client.post("/v1/pose3d", json={"keypoints_2d": sequence, "image_size": [640, 480]})
    assert whole.status_code == 200, whole.text
    frames = [
        {"json": {"keypoints_2d": kp, "image_size": [640, 480], "timestamp_s": i / 30}} for i, kp in enumerate(sequence)
    ]
    streamed = _stream(client, "pstmo-9", frames)
    np.testing.assert_allclose(_poses(streamed), _poses(whole.json()["frames"]), atol=1e-4)


def test_causal_stream_answers_each_frame_at_once(client: httpx.Client) -> None:
    opened = client.post("/v1/streams", json={"model": "pstmo-9", "mode": "causal"}).json()
    for i, kp in enumerate(_sequence(4)):
        frame = {"keypoints_2d": kp, "image_size": [640, 480], "frame_index": i}
        response = client.post(f"/v1/streams/{opened['stream_id']}/frames", json=frame)
        assert response.status_code == 200, response.text
        assert [f["frame_index"] for f in response.json()["frames"]] == [i]
    assert client.delete(f"/v1/streams/{opened['stream_id']}").json()["frames"] == []


def test_models_health_ready_metrics_docs(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    by_name = {m["name"]: m for m in models["models"]}
    assert set(by_name) == {"capf", "pstmo-9", "capf-t3"}
    assert by_name["pstmo-9"]["frames"] == 9
    assert by_name["capf"]["needs_image"] is True
    assert all(m["weights"] == "random" and m["device"] == "cpu" for m in by_name.values())
    (detector,) = client.get("/v1/models").json()["components"]  # no person detector configured in these tests
    assert (detector["kind"], detector["name"], detector["weights"]) == ("keypoint_detector", "hrnet-micro", "random")
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert "RANDOM" in ready.json()["detail"]["weights"]
    client.post("/v1/pose3d", files=_image_file())
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert 'pose3d_requests_total{code="200",route="/v1/pose3d"}' in text
    assert 'pose3d_stage_duration_seconds_count{stage="decode"}' in text
    assert "pose3d_batch_size" in text  # the in-process engine's metrics on the same registry
    assert "/v1/streams/{stream_id}" in text or "pose3d_request_duration_seconds" in text
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]["/v1/pose3d"]["post"]["requestBody"]["content"]) == {"multipart/form-data"}
    assert set(schema["paths"]["/v1/pose3d/keypoints"]["post"]["requestBody"]["content"]) == {"application/json"}
    assert "KeypointsRequest" in schema["components"]["schemas"]
    assert schema["components"]["schemas"]["PoseResponse"]["examples"]
