"""Every error the REST API reports: status, RFC 9457 problem+json body, Retry-After where it applies."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from service.config import EngineSettings, LimitSettings
from tests.service.media_samples import encode_clip, encode_image, person_image, png_bomb, png_header_only
from tests.service.rest_support import LiveServer, assert_problem, live_server, tiny_settings

pytestmark = pytest.mark.slow

LIMITS = LimitSettings(
    max_body_bytes=512 * 1024,
    max_image_pixels=1_000_000,
    max_frame_side=2048,
    max_clip_frames=20,
    max_clip_seconds=2.0,
    max_people=3,
)
SKELETON = [[300.0 + 3 * j, 100.0 + 12 * j] for j in range(17)]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server(tiny_settings(limits=LIMITS)) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def _jpeg() -> dict[str, Any]:
    return {"file": ("a.jpg", encode_image(person_image(96, 128)), "image/jpeg")}


def _post_form(client: httpx.Client, files: dict[str, Any], **data: str) -> httpx.Response:
    return client.post("/v1/pose3d", files=files, data=data)


# ---- 400 malformed


def test_malformed_requests_are_400(client: httpx.Client) -> None:
    bad_json = client.post("/v1/pose3d", content=b'{"keypoints_2d": [', headers={"content-type": "application/json"})
    assert_problem(bad_json, 400, "bad-request")
    assert_problem(_post_form(client, _jpeg(), boxes="[[1, 2, 3, 4]"), 400, "bad-request")
    assert_problem(_post_form(client, _jpeg(), flip_test="perhaps"), 400, "bad-request")
    assert_problem(_post_form(client, _jpeg(), max_people="many"), 400, "bad-request")
    no_file = client.post("/v1/pose3d", data={"model": "capf"}, files={"other": ("x.bin", b"123", "a/b")})
    missing = assert_problem(no_file, 422, "invalid-input")  # a declared field (FastAPI's File): a field error
    assert missing["errors"][0]["loc"] == ["body", "file"]
    broken = client.post(
        "/v1/pose3d", content=b"--xyz\r\nnot a part", headers={"content-type": "multipart/form-data; boundary=xyz"}
    )
    assert broken.status_code in (400, 422)
    assert_problem(broken, broken.status_code)
    timeout = client.post("/v1/pose3d", files=_jpeg(), headers={"X-Request-Timeout": "soon"})
    assert_problem(timeout, 400, "bad-request")
    open_bad = client.post("/v1/streams", content=b"{nope", headers={"content-type": "application/json"})
    assert_problem(open_bad, 400, "bad-request")
    huge_int = b'{"keypoints_2d": [], "image_size": [' + b"9" * 5000 + b", 1]}"  # past Python's int digit limit
    json_headers = {"content-type": "application/json"}
    assert_problem(client.post("/v1/pose3d", content=huge_int, headers=json_headers), 400, "bad-request")
    assert_problem(_post_form(client, _jpeg(), boxes="[[0, 0, " + "9" * 5000 + ", 9]]"), 400, "bad-request")
    stream_id = client.post("/v1/streams", json={}).json()["stream_id"]
    frame = b'{"frame_index": ' + b"9" * 5000 + b"}"
    assert_problem(client.post(f"/v1/streams/{stream_id}/frames", content=frame, headers=json_headers), 400)
    client.delete(f"/v1/streams/{stream_id}")


# ---- 404 unknown model / stream / route


def test_unknown_model_and_stream_are_404(client: httpx.Client) -> None:
    body = assert_problem(_post_form(client, _jpeg(), model="no-such-model"), 404, "unknown-model")
    assert "capf" in body["detail"]  # names the served models
    keypoints = client.post("/v1/pose3d", json={"keypoints_2d": SKELETON, "image_size": [640, 480], "model": "x"})
    assert_problem(keypoints, 404, "unknown-model")
    assert_problem(client.post("/v1/streams", json={"model": "nope"}), 404, "unknown-model")
    ghost = "A" * 32
    assert_problem(client.get(f"/v1/streams/{ghost}"), 404, "unknown-stream")
    assert_problem(client.delete(f"/v1/streams/{ghost}"), 404, "unknown-stream")
    frame = {"keypoints_2d": SKELETON, "image_size": [640, 480], "frame_index": 0}
    assert_problem(client.post(f"/v1/streams/{ghost}/frames", json=frame), 404, "unknown-stream")
    assert_problem(client.get("/v1/streams/..%2f..%2fetc"), 404)
    assert_problem(client.get("/v1/nowhere"), 404, "not-found")
    assert_problem(client.put("/v1/pose3d"), 405)


# ---- 413 too large


def test_too_large_is_413(client: httpx.Client) -> None:
    big = {"file": ("big.png", b"\x89PNG\r\n\x1a\n" + bytes(600 * 1024), "image/png")}
    assert_problem(_post_form(client, big), 413, "payload-too-large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(64):
            yield b"x" * 16384

    streamed = client.post("/v1/pose3d", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(streamed, 413, "payload-too-large")
    bomb = _post_form(client, {"file": ("bomb.png", png_bomb(1500), "image/png")})  # 2.25 Mpx > 1 Mpx
    assert "pixels" in assert_problem(bomb, 413, "payload-too-large")["detail"]
    huge_header = _post_form(client, {"file": ("h.png", png_header_only(60_000, 40_000), "image/png")})
    assert_problem(huge_header, 413, "payload-too-large")
    long_clip = _post_form(client, {"file": ("c.mp4", encode_clip(frames=30, width=32, height=32, fps=25), "v/mp4")})
    assert_problem(long_clip, 413, "payload-too-large")  # 30 frames > 20 and 1.2 s < 2 s
    slow_clip = encode_clip(frames=12, width=32, height=32, fps=4)  # 3 s > 2 s
    assert "lasts" in assert_problem(_post_form(client, {"file": ("s.mp4", slow_clip, "v/mp4")}), 413)["detail"]
    wide_clip = encode_clip(frames=2, width=2560, height=16)
    assert_problem(_post_form(client, {"file": ("w.mp4", wide_clip, "v/mp4")}), 413, "payload-too-large")
    boxes = "[" + ",".join(["[0, 0, 50, 50]"] * 4) + "]"
    assert_problem(_post_form(client, _jpeg(), boxes=boxes), 413, "payload-too-large")
    many = {"keypoints_2d": [SKELETON] * 21, "image_size": [640, 480]}
    assert_problem(client.post("/v1/pose3d", json=many), 413, "payload-too-large")


def test_a_stream_open_or_keypoints_frame_past_64_kib_is_413_unparsed(client: httpx.Client) -> None:
    """A stream's open and a keypoints frame are small documents parsed in one call that holds the interpreter lock
    (an 18 MB keypoints frame stalled every connection 0.6 s): past 64 KiB they are refused before parsing, declared
    or streamed. One person's keypoints take ~2 KiB."""
    padding = " " * (64 * 1024)  # whitespace: valid JSON, and no field the endpoint would refuse first
    json_headers = {"content-type": "application/json"}
    opened = client.post("/v1/streams", content=b"{}" + padding.encode(), headers=json_headers)
    assert_problem(opened, 413, "payload-too-large")

    def streamed() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b"{"
        for _ in range(8):
            yield b" " * 16384
        yield b"}"

    assert_problem(client.post("/v1/streams", content=streamed(), headers=json_headers), 413, "payload-too-large")
    stream_id = client.post("/v1/streams", json={}).json()["stream_id"]
    frame = json.dumps({"frame_index": 0, "keypoints_2d": SKELETON, "image_size": [640, 480]}) + padding
    for path in (f"/v1/streams/{stream_id}/frames/keypoints", f"/v1/streams/{stream_id}/frames"):
        assert_problem(client.post(path, content=frame, headers=json_headers), 413, "payload-too-large")
    small = client.post(f"/v1/streams/{stream_id}/frames/keypoints", content=frame.strip(), headers=json_headers)
    assert small.status_code == 200, small.text
    client.delete(f"/v1/streams/{stream_id}")


# ---- 415 unsupported media


def test_unsupported_media_is_415(client: httpx.Client) -> None:
    gif = {"file": ("a.jpg", b"GIF89a\x01\x00\x01\x00" + bytes(40), "image/jpeg")}  # lies about its type
    assert_problem(_post_form(client, gif), 415, "unsupported-media-type")
    text = client.post("/v1/pose3d", content=b"hello", headers={"content-type": "text/plain"})
    assert_problem(text, 415, "unsupported-media-type")
    assert_problem(client.post("/v1/pose3d", content=b"hello"), 415, "unsupported-media-type")
    stream_id = client.post("/v1/streams", json={}).json()["stream_id"]
    clip = {"file": ("c.mp4", encode_clip(frames=2, width=32, height=32), "video/mp4")}
    pushed = client.post(f"/v1/streams/{stream_id}/frames", files=clip, data={"frame_index": "0"})
    assert_problem(pushed, 415, "unsupported-media-type")
    client.delete(f"/v1/streams/{stream_id}")


# ---- 422 invalid values


@pytest.mark.parametrize(
    "body",
    [
        {"keypoints_2d": SKELETON[:16], "image_size": [640, 480]},
        {"keypoints_2d": [[1.0, 2.0, 3.0, 4.0]] * 17, "image_size": [640, 480]},
        {"keypoints_2d": [[1.0, 2.0, 2.0]] * 17, "image_size": [640, 480]},  # score > 1
        {"keypoints_2d": [[1e12, 2.0]] * 17, "image_size": [640, 480]},
        {"keypoints_2d": SKELETON, "image_size": [0, 480]},
        {"keypoints_2d": SKELETON, "image_size": [640, 480], "joint_set": "mpii"},
        {"keypoints_2d": SKELETON, "image_size": [640, 480], "surprise": 1},
        {"keypoints_2d": "a string", "image_size": [640, 480]},
        {"keypoints_2d": SKELETON, "image_size": [640, 480], "model": "capf"},  # CA-PF needs the image
        {"image_size": [640, 480]},
        [],
    ],
)
def test_invalid_keypoints_are_422(client: httpx.Client, body: Any) -> None:
    assert_problem(client.post("/v1/pose3d", json=body), 422)


def test_non_finite_values_are_422(client: httpx.Client) -> None:
    text = '{"keypoints_2d": [' + ",".join(["[NaN, 1.0]"] * 17) + '], "image_size": [640, 480]}'
    response = client.post("/v1/pose3d", content=text.encode(), headers={"content-type": "application/json"})
    assert "NaN" in assert_problem(response, 422, "invalid-input")["detail"]
    text = text.replace("NaN", "Infinity")
    response = client.post("/v1/pose3d", content=text.encode(), headers={"content-type": "application/json"})
    assert_problem(response, 422, "invalid-input")
    assert_problem(_post_form(client, _jpeg(), boxes="[[0, 0, NaN, 10]]"), 422, "invalid-input")


def test_invalid_form_values_are_422(client: httpx.Client) -> None:
    corrupt = {"file": ("c.jpg", encode_image(person_image(64, 64))[:300], "image/jpeg")}
    assert_problem(_post_form(client, corrupt), 422, "decode-failed")
    assert_problem(_post_form(client, _jpeg(), boxes="[[30, 30, 10, 10]]"), 422, "invalid-input")
    assert_problem(_post_form(client, _jpeg(), boxes="[[500, 500, 600, 600]]"), 422, "invalid-input")
    assert_problem(_post_form(client, _jpeg(), max_people="0"), 422, "invalid-input")
    assert_problem(_post_form(client, _jpeg(), max_people="4"), 422, "invalid-input")
    assert_problem(_post_form(client, _jpeg(), mode="sideways"), 422, "invalid-input")
    assert_problem(_post_form(client, _jpeg(), every_nth="0"), 422, "invalid-input")
    clip = encode_clip(frames=4, width=32, height=32)
    garbage = clip[:64] + bytes(len(clip) - 64)
    assert_problem(_post_form(client, {"file": ("g.mp4", garbage, "video/mp4")}), 422, "decode-failed")
    assert_problem(client.post("/v1/streams", json={"mode": "sideways"}), 422, "invalid-input")
    assert_problem(client.post("/v1/streams", json={"max_people": 99}), 422, "invalid-input")


# ---- 504 deadline


def test_past_the_deadline_is_504(client: httpx.Client) -> None:
    clip = {"file": ("c.mp4", encode_clip(frames=16, width=64, height=64), "video/mp4")}
    response = client.post("/v1/pose3d", files=clip, headers={"X-Request-Timeout": "0.001"})
    assert_problem(response, 504, "deadline-exceeded")
    assert client.post("/v1/pose3d", files=_jpeg()).status_code == 200  # the gateway is fine afterwards


# ---- 429 overload, 503 unavailable


def test_gateway_in_flight_bound_is_429_with_retry_after() -> None:
    settings = tiny_settings(limits=LIMITS.model_copy(update={"max_inflight_requests": 1, "retry_after_s": 2.0}))
    release = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield b'{"keypoints_2d": '
        release.wait(30)
        yield b'[], "image_size": [1, 1]}'

    with live_server(settings) as live, live.client() as client, ThreadPoolExecutor(1) as pool:
        held = pool.submit(client.post, "/v1/pose3d", content=slow_body(), headers={"content-type": "application/json"})
        deadline = time.monotonic() + 120  # a budget for a busy machine, not a speed claim
        while live.app.state.gateway is None or _in_flight(live) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        busy = client.post("/v1/pose3d", json={"keypoints_2d": SKELETON, "image_size": [640, 480]})
        assert_problem(busy, 429, "overloaded")
        assert busy.headers["retry-after"] == "2"
        assert client.get("/healthz").status_code == 200  # health is never bounded
        release.set()
        assert held.result(30).status_code == 422


def _in_flight(live: LiveServer) -> int:
    """Requests holding the process's one in-flight bound (shared by REST and gRPC)."""
    return int(live.app.state.security.in_flight.count)


def test_engine_overload_is_429_or_503_with_retry_after_and_never_500() -> None:
    settings = tiny_settings(engine=EngineSettings(max_batch_size=1, max_delay_ms=0.0, max_queue=1))
    with live_server(settings) as live, live.client() as client, ThreadPoolExecutor(24) as pool:
        files = _jpeg()
        responses = list(pool.map(lambda _: client.post("/v1/pose3d", files=files), range(48)))
    codes = sorted({r.status_code for r in responses})
    assert set(codes) <= {200, 429, 503}, codes
    assert 200 in codes
    rejected = [r for r in responses if r.status_code != 200]
    assert rejected, "a queue of 1 under 24 concurrent clients must reject some requests"
    for response in rejected:
        assert_problem(response, response.status_code)
        assert int(response.headers["retry-after"]) >= 1


@pytest.mark.redis
def test_readyz_is_503_with_detail_when_redis_is_gone(tmp_path: Any) -> None:
    from tests.conftest import RedisServer

    redis = RedisServer(tmp_path)
    try:
        with live_server(tiny_settings(redis_url=redis.url)) as live, live.client() as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            redis.stop()
            down = client.get("/readyz")
            assert down.status_code == 503
            assert down.json()["ready"] is False
            assert down.json()["detail"]
            assert "retry-after" in down.headers
            opened = client.post("/v1/streams", json={})
            assert opened.status_code in (201, 503), opened.text
            if opened.status_code == 201:
                frame = {"keypoints_2d": SKELETON, "image_size": [640, 480], "frame_index": 0}
                pushed = client.post(f"/v1/streams/{opened.json()['stream_id']}/frames", json=frame)
                assert_problem(pushed, 503)
                assert int(pushed.headers["retry-after"]) >= 1
            else:
                assert_problem(opened, 503)
                assert int(opened.headers["retry-after"]) >= 1
    finally:
        redis.stop()
