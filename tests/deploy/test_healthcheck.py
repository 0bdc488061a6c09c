"""docker/healthcheck.py, the image's HEALTHCHECK, run as the container runs it against real servers: a gRPC
server with grpc.health.v1 (worker) and an HTTP server answering /healthz (gateway)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.conftest import REPO, free_port
from tests.deploy.support import DOCKER

SCRIPT = DOCKER / "healthcheck.py"


def run_check(*args: str) -> int:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, timeout=30).returncode


@pytest.fixture
def grpc_health() -> Iterator[tuple[int, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer
    server.stop(None)


def test_worker_is_healthy_only_when_serving(grpc_health: tuple[int, health.HealthServicer]) -> None:
    port, servicer = grpc_health
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # models loading
    assert run_check("worker", "--port", str(port)) == 1
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert run_check("worker", "--port", str(port)) == 0
    assert run_check("worker", "--port", str(free_port())) == 1  # nothing listening


@pytest.mark.parametrize(("status", "code"), [(200, 0), (503, 1)])
def test_gateway_is_healthy_when_healthz_answers_200(status: int, code: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert run_check("gateway", "--port", str(server.server_address[1])) == code
    finally:
        server.shutdown()
        server.server_close()
    assert run_check("gateway", "--port", str(free_port())) == 1


def test_role_and_port_come_from_the_containers_command_line() -> None:
    spec = importlib.util.spec_from_file_location("pose3d_healthcheck", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pid1 = ["/opt/venv/bin/python", "/opt/venv/bin/pose3d"]
    cases = [
        ([*pid1, "worker", "--port", "50061", "--metrics-port", "9100"], {}, ("worker", 50061)),
        ([*pid1, "gateway", "--port=8080", "--workers", "w:1"], {}, ("gateway", 8080)),
        ([*pid1, "gateway"], {"POSE3D_PORT": "8001"}, ("gateway", 8001)),
        ([*pid1, "serve"], {}, ("serve", 8000)),
        ([*pid1, "worker"], {}, ("worker", 50061)),
    ]
    for argv, env, expected in cases:
        assert module.role_and_port(argv, env) == expected, argv
    with pytest.raises(ValueError, match="not a pose3d"):
        module.role_and_port(["/bin/sh"], {})
