"""A port that cannot be bound (taken) stops `pose3d serve`/`worker` in one line naming the address and its flag
(exit 2), for every port: REST (tests/e2e/test_startup.py), public gRPC, the worker's gRPC and metrics ports; so
do a Redis URL without its scheme, a TLS certificate that is not PEM (each named, never blamed on the port) and an
OTLP endpoint without the optional exporter installed."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.test_startup import _fails_with_one_line, _pose3d
from tests.service.test_rest_settings import TINY_TOML

pytestmark = pytest.mark.e2e


def test_a_taken_metrics_port_names_its_flag(tmp_path: Path) -> None:
    """Before, the error did not name the address or --metrics-port, and a traceback followed from the gRPC server
    the worker had already started and never stopped ('Exception ignored … Event loop is closed')."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML.split("[limits]")[0].replace("grpc_port = 0\n", ""))  # a worker has no REST limits
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = _pose3d("worker", "--host", "127.0.0.1", "--port", str(free_port()), "--metrics-port", str(port),
                         "--config", str(config), "--allow-random-weights")  # fmt: skip
        _fails_with_one_line(worker, f"127.0.0.1:{port}", "--metrics-port")


def test_a_taken_grpc_port_names_the_address(tmp_path: Path) -> None:
    """grpcio raises RuntimeError where it returned 0 for a port it cannot bind: a traceback and exit 1 from
    `pose3d serve --grpc-port` and `pose3d worker --port`, where a taken REST port is one line and exit 2."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    worker_config = tmp_path / "worker.toml"
    worker_config.write_text(TINY_TOML.split("[limits]")[0].replace("grpc_port = 0\n", ""))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = _pose3d("serve", "--host", "127.0.0.1", "--port", str(free_port()), "--grpc-port", str(port),
                        "--config", str(config))  # fmt: skip
        _fails_with_one_line(serve, f"127.0.0.1:{port}", "--grpc-port")
        worker = _pose3d("worker", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
                         "--config", str(worker_config), "--allow-random-weights")  # fmt: skip
        _fails_with_one_line(worker, f"127.0.0.1:{port}", "--port")


def test_one_port_for_rest_and_grpc_is_refused_in_one_line(tmp_path: Path) -> None:
    """Before, the gRPC server took the port first and uvicorn only logged its bind error (exit 3)."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    port = free_port()
    serve = _pose3d("serve", "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(port),
                    "--config", str(config))  # fmt: skip
    _fails_with_one_line(serve, f"port and grpc_port are both {port}")


@pytest.mark.parametrize("url", ["localhost:6379", "http://127.0.0.1:6379"])
def test_a_redis_url_without_its_scheme_names_the_setting(tmp_path: Path, url: str) -> None:
    """`localhost:6379` (the scheme left out) stopped `pose3d serve` with redis-py's ValueError traceback (exit 1)."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    serve = _pose3d("serve", "--host", "127.0.0.1", "--port", str(free_port()), "--config", str(config),
                    env={"POSE3D_REDIS_URL": url})  # fmt: skip
    _fails_with_one_line(serve, "invalid settings", "redis_url", "redis://")


def test_a_certificate_that_is_not_pem_names_the_files(tmp_path: Path) -> None:
    """gRPC only fails to bind with an unusable certificate: without the check the line would blame the port."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    tls = {"POSE3D_SECURITY__TLS_CERTFILE": str(bad), "POSE3D_SECURITY__TLS_KEYFILE": str(bad)}
    serve = _pose3d("serve", "--host", "127.0.0.1", "--port", str(free_port()), "--grpc-port", str(free_port()),
                    "--config", str(config), env=tls)  # fmt: skip
    line = _fails_with_one_line(serve, str(bad), "PEM")
    assert "in use" not in line


@pytest.mark.skipif(importlib.util.find_spec("opentelemetry.exporter") is not None, reason="the otel extra is here")
def test_an_otlp_endpoint_without_the_otel_extra_names_the_extra(tmp_path: Path) -> None:
    """telemetry.otlp_endpoint set where the optional exporter is not installed stopped the command with a
    ModuleNotFoundError traceback."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    serve = _pose3d("serve", "--host", "127.0.0.1", "--port", str(free_port()), "--config", str(config),
                    env={"POSE3D_TELEMETRY__OTLP_ENDPOINT": "http://127.0.0.1:4317"})  # fmt: skip
    _fails_with_one_line(serve, "pose3d[otel]", "telemetry.otlp_endpoint")
