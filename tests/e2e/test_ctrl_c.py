"""Ctrl-C (SIGINT) on every ``pose3d`` process: exit 130, one line for the user, no traceback, no warning.

Each test starts the real command, waits on what it says (readiness, a first result), sends SIGINT and reads
everything stderr got after that gate.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.cli_process import Pose3d, assert_one_clean_line, pose3d_env
from tests.service.media_samples import encode_clip
from tests.service.test_rest_settings import TINY_TOML

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TINY_WITH_GRPC = TINY_TOML.replace("grpc_port = 0\n", "")
WORKER_TOML = TINY_WITH_GRPC.split("[limits]")[0]  # a worker has no REST limits


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_WITH_GRPC)
    return path


def _serve(tmp_path: Path, config: Path, log_level: str = "info") -> tuple[Pose3d, int, int]:
    port, grpc_port = free_port(), free_port()
    args = ["serve", "--config", str(config), "--port", str(port), "--grpc-port", str(grpc_port)]
    serve = Pose3d(args, tmp_path, pose3d_env(tmp_path, POSE3D_LOG_LEVEL=log_level))
    serve.wait_for_http(f"http://127.0.0.1:{port}/healthz")
    return serve, port, grpc_port


@pytest.fixture
def served(tmp_path: Path, config: Path) -> Iterator[tuple[int, int]]:
    """A `pose3d serve` (REST, gRPC) for the client commands."""
    (tmp_path / "server").mkdir()
    serve, port, grpc_port = _serve(tmp_path / "server", config)
    serve.wait_for_stderr("Uvicorn running")
    try:
        yield port, grpc_port
    finally:
        serve.stop()


@pytest.mark.parametrize("log_level", ["info", "warning"])
def test_serve(tmp_path: Path, config: Path, log_level: str) -> None:
    """With gRPC on: the gRPC server is stopped before the loop closes (no ``Server.__del__`` warning)."""
    serve, _, _ = _serve(tmp_path, config, log_level)
    if log_level == "info":
        serve.wait_for_stderr("Uvicorn running")
    code, err = serve.interrupt()
    line = assert_one_clean_line(code, err, "serve")
    if log_level == "warning":  # the user's terminal shows exactly this line
        assert err == line + "\n"


def test_gateway(tmp_path: Path) -> None:
    port = free_port()
    args = ["gateway", "--port", str(port), "--grpc-port", str(free_port()), "--workers", f"127.0.0.1:{free_port()}"]
    gateway = Pose3d(args, tmp_path, pose3d_env(tmp_path))
    gateway.wait_for_http(f"http://127.0.0.1:{port}/healthz")
    gateway.wait_for_stderr("Uvicorn running")
    assert_one_clean_line(*gateway.interrupt(), "gateway")


def test_worker(tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text(WORKER_TOML)
    args = ["worker", "--host", "127.0.0.1", "--port", str(free_port()), "--metrics-port", "0"]
    worker = Pose3d([*args, "--config", str(config), "--allow-random-weights"], tmp_path, pose3d_env(tmp_path))
    worker.wait_for_stderr("pose3d worker: serving on")
    assert_one_clean_line(*worker.interrupt(), "worker")


def test_estimate_of_a_clip_as_a_job(tmp_path: Path, served: tuple[int, int]) -> None:
    clip = tmp_path / "long.mp4"
    clip.write_bytes(encode_clip(frames=400, width=64, height=96))
    out = tmp_path / "out.jsonl"
    args = ["estimate", str(clip), "--url", f"http://127.0.0.1:{served[0]}", "-o", str(out)]
    estimate = Pose3d(args, tmp_path, pose3d_env(tmp_path))
    estimate.wait_for_lines(out, 1)  # results are arriving
    code, err = estimate.interrupt()
    line = assert_one_clean_line(code, err, "estimate")
    assert "run the same command again to resume" in line
    assert (tmp_path / "out.jsonl.job").exists()


def test_stream(tmp_path: Path, served: tuple[int, int]) -> None:
    args = ["stream", "--synthetic", "3000", "--grpc", f"127.0.0.1:{served[1]}", "-o", str(tmp_path / "s.jsonl")]
    stream = Pose3d(args, tmp_path, pose3d_env(tmp_path))
    stream.wait_for_stderr(" fps ")  # the progress line: frames go and results come back
    code, err = stream.interrupt()
    assert_one_clean_line(code, err, "stream")
    assert err.endswith("\npose3d stream: interrupted, shut down\n")  # on a line of its own, not after the bar


def test_serve_says_listening_only_once_bound(tmp_path: Path, config: Path) -> None:
    """The "listening on" line comes after the bind, with the bound port; a port in use never gets one."""
    serve, port, _ = _serve(tmp_path, config)
    try:
        serve.wait_for_stderr(f"listening on http://127.0.0.1:{port}")
        log = serve.stderr()
        assert log.index("Uvicorn running") < log.index("pose3d serve: listening on")
    finally:
        serve.stop()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        (tmp_path / "busy").mkdir()
        clash = Pose3d(["serve", "--config", str(config), "--port", str(busy), "--grpc-port", "0"],
                       tmp_path / "busy", pose3d_env(tmp_path / "busy"))  # fmt: skip
        assert clash.proc.wait(600) == 2
    assert "listening on" not in clash.stderr()
    assert f"cannot listen on 127.0.0.1:{busy}" in clash.stderr()
