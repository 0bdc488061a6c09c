"""``/v1/streams/ws``: the WebSocket stream equals the clip posted whole; malformed messages get problem closes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import av
import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from tests.service.media_samples import encode_clip, encode_image, person_image
from tests.service.rest_support import LiveServer, live_server, tiny_settings
from tests.service.ws_support import closed_with, image_message, receive, stream_frames, ws_url

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server(tiny_settings()) as live:
        yield live


def _poses(frames: list[dict[str, Any]]) -> Any:
    ordered = sorted(frames, key=lambda f: f["frame_index"])
    return np.asarray([[p["keypoints_3d"] for p in f["people"]] for f in ordered])


@pytest.mark.parametrize("model", ["pstmo-9", "capf-t3"])
def test_websocket_stream_equals_the_clip_posted_whole(server: LiveServer, model: str) -> None:
    clip = encode_clip(frames=11)
    with server.client() as client:
        whole = client.post("/v1/pose3d", files={"file": ("c.mp4", clip, "video/mp4")}, data={"model": model})
    assert whole.status_code == 200, whole.text
    with av.open(io.BytesIO(clip), mode="r") as container:
        images = [np.asarray(f.to_ndarray(format="rgb24"), dtype=np.uint8) for f in container.decode(video=0)]
    frames = [image_message(i, encode_image(img, ".png"), i / 25) for i, img in enumerate(images)]
    streamed = stream_frames(server.url, {"model": model}, frames)
    assert [f["frame_index"] for f in streamed] == list(range(11))  # in order, each once
    np.testing.assert_allclose(_poses(streamed), _poses(whole.json()["frames"]), atol=1e-4)


def test_keypoint_frames_in_causal_mode_answer_at_once(server: LiveServer) -> None:
    kp = [[320.0 + 4 * j, 180.0 + 10 * j] for j in range(17)]
    frame = {"type": "frame", "keypoints_2d": kp, "image_size": [640, 480]}
    with connect(ws_url(server.url)) as ws:
        ws.send(json.dumps({"type": "open", "model": "pstmo-9", "mode": "causal"}))
        opened = receive(ws)
        assert opened["mode"] == "causal"
        assert opened["model"]["random_weights"] is True
        assert "RANDOM" in opened["warnings"][0]
        for i in range(3):
            ws.send(json.dumps({**frame, "frame_index": i}))
            assert [f["frame_index"] for f in receive(ws)["frames"]] == [i]


def _problem_close(server: LiveServer, messages: list[str | bytes]) -> tuple[int, dict[str, Any], dict[str, Any]]:
    with connect(ws_url(server.url)) as ws:
        for m in messages:
            ws.send(m)
        code, reason, problem = closed_with(ws)
    assert problem is not None
    return code, json.loads(reason), problem


OPEN = json.dumps({"type": "open", "model": "pstmo-9"})


@pytest.mark.parametrize(
    ("messages", "code", "slug"),
    [
        (["not json"], 4400, "bad-request"),
        ([json.dumps([1, 2])], 4400, "bad-request"),
        ([json.dumps({"type": "frame", "frame_index": 0})], 4400, "bad-request"),  # frame before open
        ([json.dumps({"type": "open", "model": "nope"})], 4404, "unknown-model"),
        ([json.dumps({"type": "open", "mode": "sideways"})], 4422, "invalid-input"),
        ([OPEN, b"\x00\x01"], 4400, "bad-request"),
        ([OPEN, json.dumps({"type": "dance"})], 4400, "bad-request"),
        ([OPEN, json.dumps(image_message(0, b"not an image at all"))], 4415, "unsupported-media-type"),
        ([OPEN, json.dumps({**image_message(0, b""), "image": "%%%"})], 4400, "bad-request"),
        ([OPEN, json.dumps({**image_message(-1, b"x")})], 4422, "invalid-input"),
        # Python's json writes (and reads) NaN/Infinity: such a timestamp was answered as NaN, which is not JSON
        ([OPEN, json.dumps(image_message(0, b"x", float("nan")))], 4422, "invalid-input"),
        ([OPEN, json.dumps(image_message(0, b"x", float("inf")))], 4422, "invalid-input"),
    ],
)
def test_malformed_messages_close_with_a_problem(
    server: LiveServer, messages: list[str | bytes], code: int, slug: str
) -> None:
    got_code, reason, problem = _problem_close(server, messages)
    assert got_code == code
    assert reason == {"type": f"urn:pose3d:problem:{slug}", "status": code - 4000}
    assert problem["type"] == f"urn:pose3d:problem:{slug}"
    assert problem["status"] == code - 4000
    assert problem["detail"]
    assert problem["instance"] == "/v1/streams/ws"


def test_a_broken_client_does_not_disturb_another(server: LiveServer) -> None:
    image = encode_image(person_image(192, 256), ".png")
    with connect(ws_url(server.url)) as good:
        good.send(json.dumps({"type": "open", "model": "pstmo-9", "mode": "causal"}))
        assert receive(good)["type"] == "opened"
        good.send(json.dumps(image_message(0, image)))
        assert len(receive(good)["frames"]) == 1
        code, _, _ = _problem_close(server, [OPEN, "{broken"])
        assert code == 4400
        with connect(ws_url(server.url)) as rude:  # vanishes mid-stream without closing
            rude.send(OPEN)
            receive(rude)
        good.send(json.dumps(image_message(1, image)))
        assert [f["frame_index"] for f in receive(good)["frames"]] == [1]
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/healthz").status_code == 200


def test_a_socket_that_never_opens_is_closed_not_held_forever() -> None:
    """As a gRPC ``StreamEstimate`` that sends no ``open`` (``grpc_open_timeout_s``): the socket is closed 4504."""
    with live_server(tiny_settings(grpc_open_timeout_s=0.5)) as live, connect(ws_url(live.url)) as ws:
        code, reason, problem = closed_with(ws, timeout_s=30.0)  # sends nothing, and answers the server's pings
    assert (code, json.loads(reason)["type"]) == (4504, "urn:pose3d:problem:deadline-exceeded")
    assert problem is not None
    assert "open" in problem["detail"]
