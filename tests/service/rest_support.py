"""A real gateway over real HTTP for the REST tests: uvicorn on a free port in a thread, tiny models."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from service.assembly import in_process_engine
from service.config import DetectorSettings, EngineSettings, GatewaySettings, LifterKind, LimitSettings, ModelSpec
from service.gateway.app import create_app
from service.gateway.http_head import bounded_protocol
from service.gateway.limits import HeadDoor
from tests.conftest import free_port

PROBLEM = "application/problem+json"


def tiny_settings(**overrides: Any) -> GatewaySettings:
    """Random-weight tiny models: CA-PF on hrnet-micro features, P-STMO over 9 frames, CA-PF temporal over 3."""
    fields: dict[str, Any] = {
        "allow_random_weights": True,
        "detector": DetectorSettings(arch="hrnet-micro", flip_test=False),
        "models": {
            "capf": ModelSpec(kind=LifterKind.CAPF, arch="capf-tiny", flip_test=False),
            "pstmo-9": ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-tiny-9", frames=9),
            "capf-t3": ModelSpec(kind=LifterKind.CAPF_TEMPORAL, arch="capf-tiny", frames=3, flip_test=False),
        },
        "default_image_model": "capf",
        "default_clip_model": "pstmo-9",
        "engine": EngineSettings(max_batch_size=16, max_delay_ms=2.0, request_timeout_s=600.0),
        "limits": LimitSettings(max_body_bytes=4 * 1024 * 1024, max_clip_frames=200, max_clip_seconds=60.0),
        "host": "127.0.0.1",
        "grpc_port": 0,
    }
    fields.update(overrides)
    return GatewaySettings(**fields)


class LiveServer:
    """The app served by uvicorn on 127.0.0.1:<free port> in a daemon thread (lifespan included), through the
    gateway's own HTTP protocol (head limits; the engine's door asked from an estimate's head unless ``head_door``
    is false, and then the app's own checks decide)."""

    def __init__(self, settings: GatewaySettings, head_door: bool = True) -> None:
        self.port = free_port()
        self.settings = settings.model_copy(update={"port": self.port})
        self.app = create_app(self.settings, engine_factory=in_process_engine)
        state = self.app.state
        door = HeadDoor(self.settings.limits, state.gateway.metrics, state.security.in_flight) if head_door else None
        http = bounded_protocol(self.settings.limits, door)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", http=http
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the gateway failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start in time")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, timeout_s: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout_s)


@contextmanager
def live_server(settings: GatewaySettings, head_door: bool = True) -> Iterator[LiveServer]:
    server = LiveServer(settings, head_door)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def assert_problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status`` (and type ``urn:pose3d:problem:<slug>``)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["type"].startswith("urn:pose3d:problem:")
    if slug is not None:
        assert body["type"] == f"urn:pose3d:problem:{slug}", body
    assert body["request_id"] == response.headers["x-request-id"]
    return body
