"""A WebSocket refusal says when to retry, as REST's ``Retry-After`` and gRPC's ``retry-after-s`` trailer do.

A frame past the key's bucket closed the session 4429 after a problem without any retry time (REST answered the
same refusal with ``Retry-After``, gRPC with its trailer): a browser could only retry blindly. Now the problem
message of a refusal (429, 503) carries ``retry_after_s`` (seconds), a refused handshake's too (a 4429 handshake
was a bare close). The bucket's clock is the test's (it never moves).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from service.config import QuotaSettings
from service.metrics import Metrics
from service.security.guard import Security
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.security_support import Clock, bearer, make_keys, secured

PERSON = [[100.0 + j, 200.0 + j] for j in range(17)]


def app_with_one_token_per_two_seconds(tmp: Path) -> tuple[TestClient, str]:
    from service.gateway.app import create_app

    keys = make_keys(tmp)
    settings = secured(keys, QuotaSettings(rate_per_s=0.5, burst=1, max_streams=0))
    metrics = Metrics()
    security = Security(settings, metrics, clock=Clock())
    return TestClient(create_app(settings, engine=ToyEngine(), metrics=metrics, security=security)), keys.alice


def test_a_frame_past_the_bucket_is_refused_with_its_retry_time(tmp_path: Path) -> None:
    app, key = app_with_one_token_per_two_seconds(tmp_path)
    with app as http, http.websocket_connect("/v1/streams/ws", headers=bearer(key)) as ws:  # its one token
        ws.send_json({"type": "open"})
        assert ws.receive_json()["type"] == "opened"
        ws.send_json({"type": "frame", "frame_index": 0, "keypoints_2d": PERSON, "image_size": [640, 480]})
        refusal = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4429
        assert refusal["type"] == "problem"
        assert refusal["problem"]["status"] == 429
        assert refusal["problem"]["retry_after_s"] == pytest.approx(2.0)  # one token at 0.5/s
        assert http.get("/v1/models", headers=bearer(key)).headers["Retry-After"] == "2"  # as REST says it


def test_a_problem_that_is_no_refusal_has_no_retry_time(tmp_path: Path) -> None:
    app, key = app_with_one_token_per_two_seconds(tmp_path)
    with app as http, http.websocket_connect("/v1/streams/ws", headers=bearer(key)) as ws:
        ws.send_json({"type": "frame"})  # before `open`
        problem = ws.receive_json()["problem"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4400
    assert "retry_after_s" not in problem


def test_a_handshake_past_the_bucket_is_refused_with_its_retry_time(tmp_path: Path) -> None:
    app, key = app_with_one_token_per_two_seconds(tmp_path)
    with app as http:
        assert http.get("/v1/models", headers=bearer(key)).status_code == 200  # its one token
        with http.websocket_connect("/v1/streams/ws", headers=bearer(key)) as ws:
            refusal = ws.receive_json()
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
    assert closed.value.code == 4429
    assert refusal["type"] == "problem"
    assert refusal["problem"]["type"].endswith(":quota-exceeded")
    assert refusal["problem"]["retry_after_s"] == pytest.approx(2.0)


def test_a_handshake_without_a_key_is_only_a_close(tmp_path: Path) -> None:
    app, _ = app_with_one_token_per_two_seconds(tmp_path)
    with app as http, http.websocket_connect("/v1/streams/ws") as ws, pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    assert closed.value.code == 4401
