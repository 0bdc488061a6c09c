"""``pose3d_requests_total`` counts every WebSocket connection once, when it ends, under its route template and a
code that says how it ended — its close code (1000, 4400, 4401, 4429, …) or the HTTP status of a refused
handshake — and its duration goes to ``pose3d_request_duration_seconds``, as REST requests and gRPC calls are
counted. Connections were not counted at all. The quota's clock is the test's (it never moves)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from service.config import GatewaySettings, QuotaSettings
from service.metrics import Metrics
from service.security.guard import Security
from tests.conftest import free_port
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.security_support import Clock, bearer, make_keys, secured
from tests.service.test_grpc_request_counts import counts

PERSON = [[100.0 + j, 200.0 + j] for j in range(17)]
WS = "/v1/streams/ws"


def durations(metrics: Metrics, route: str) -> float:
    return metrics.registry.get_sample_value("pose3d_request_duration_seconds_count", {"route": route}) or 0.0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Metrics, str]]:
    """A gateway with keys, one token per two seconds for each, on a clock that never moves."""
    from service.gateway.app import create_app

    keys = make_keys(tmp_path)
    settings = secured(keys, QuotaSettings(rate_per_s=0.5, burst=2, max_streams=0))
    metrics = Metrics()
    security = Security(settings, metrics, clock=Clock())
    with TestClient(create_app(settings, engine=ToyEngine(), metrics=metrics, security=security)) as http:
        yield http, metrics, keys.alice


def _closed(ws: WebSocketTestSession) -> int:
    """Read to the close: its code."""
    try:
        while True:
            ws.receive_json()
    except WebSocketDisconnect as closed:
        return int(closed.code)


def test_each_connection_is_counted_once_by_how_it_ended(served: tuple[TestClient, Metrics, str]) -> None:
    http, metrics, key = served
    with http.websocket_connect(WS, headers=bearer(key)) as ws:  # a token: the handshake
        ws.send_json({"type": "open"})
        assert ws.receive_json()["type"] == "opened"
        ws.send_json({"type": "close"})
        assert ws.receive_json()["final"] is True
        assert _closed(ws) == 1000
    assert counts(metrics, WS) == {"1000": 1.0}
    with http.websocket_connect(WS, headers=bearer(key)) as ws:  # the last token
        ws.send_json({"type": "frame", "frame_index": 0, "keypoints_2d": PERSON, "image_size": [640, 480]})
        assert _closed(ws) == 4400  # a frame before `open`
    with http.websocket_connect(WS) as ws:  # no key: refused as the handshake is answered
        assert _closed(ws) == 4401
    with http.websocket_connect(WS, headers=bearer(key)) as ws:  # the bucket is empty
        assert _closed(ws) == 4429
    assert counts(metrics, WS) == {"1000": 1.0, "4400": 1.0, "4401": 1.0, "4429": 1.0}
    assert durations(metrics, WS) == 4.0


def test_a_handshake_on_no_route_is_counted_as_the_server_answers_it(served: tuple[TestClient, Metrics, str]) -> None:
    http, metrics, key = served
    with pytest.raises(WebSocketDisconnect), http.websocket_connect("/v1/no-such-socket", headers=bearer(key)):
        pass
    assert counts(metrics, "unmatched") == {"403": 1.0}
    assert counts(metrics, "/v1/no-such-socket") == {}


def _counted(metrics: Metrics, route: str, tries: int = 1000) -> dict[str, float]:
    """The counts of ``route`` once there are any (uvicorn's thread counts a connection as its app returns, which
    may be a moment after the client saw it close)."""
    for _ in range(tries):
        if found := counts(metrics, route):
            return found
        time.sleep(0.01)
    return {}


def test_a_client_that_goes_away_is_counted_with_its_close_code() -> None:
    """Over a real server (uvicorn): the client's own close code (1001, going away) mid-stream."""
    from websockets.sync.client import connect

    from service.gateway.app import create_app

    port, metrics = free_port(), Metrics()
    settings = GatewaySettings(default_image_model="toy", default_clip_model="toy", port=port)
    app = create_app(settings, engine=ToyEngine(), metrics=metrics)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(2000):
            if server.started:
                break
            time.sleep(0.01)
        with connect(f"ws://127.0.0.1:{port}{WS}") as ws:
            ws.send(json.dumps({"type": "open"}))
            assert json.loads(ws.recv(timeout=30))["type"] == "opened"
            ws.close(code=1001)
        assert _counted(metrics, WS) == {"1001": 1.0}
    finally:
        server.should_exit = True
        thread.join(30)
