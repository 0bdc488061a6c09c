"""Settings layering for `pose3d serve` and the random-weights rule; the real command as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.config import GatewaySettings, LifterKind, ModelSpec, build_settings, resolve_random_weights
from tests.conftest import REPO, free_port

TINY_TOML = """
default_image_model = "capf"
default_clip_model = "pstmo-9"
grpc_port = 0

[detector]
arch = "hrnet-micro"
flip_test = false

[models.capf]
kind = "capf"
arch = "capf-tiny"

[models.pstmo-9]
kind = "pstmo"
arch = "pstmo-tiny-9"
frames = 9

[limits]
max_people = 7
max_clip_frames = 500
"""


def test_flags_beat_env_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "pose3d.toml"
    config.write_text("port = 9001\n" + TINY_TOML)
    monkeypatch.setenv("POSE3D_LIMITS__MAX_PEOPLE", "5")
    monkeypatch.setenv("POSE3D_PORT", "9002")
    settings = build_settings(GatewaySettings, config, port=None)
    assert isinstance(settings, GatewaySettings)
    assert settings.port == 9002  # env over file
    assert settings.limits.max_people == 5  # env over file, nested
    assert settings.limits.max_clip_frames == 500  # file over default, same nested table
    assert set(settings.models) == {"capf", "pstmo-9"}
    assert build_settings(GatewaySettings, config, port=1234).port == 1234  # flag over env


def test_yaml_files_work_too(tmp_path: Path) -> None:
    config = tmp_path / "pose3d.yaml"
    config.write_text("port: 8100\nlimits:\n  max_people: 2\nmodels:\n  p:\n    kind: pstmo\n    arch: pstmo-tiny-9\n")
    settings = build_settings(GatewaySettings, config)
    assert settings.port == 8100
    assert settings.limits.max_people == 2
    assert settings.models == {"p": ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-tiny-9")}


def test_random_weights_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSE3D_ALLOW_RANDOM_WEIGHTS", raising=False)
    fresh = build_settings(GatewaySettings)
    assert fresh.allow_random_weights is False  # the setting itself defaults to off (deployments)
    allowed, note = resolve_random_weights(fresh, None)
    assert allowed.allow_random_weights is True  # ...but `serve` on a fresh machine serves
    assert "RANDOM WEIGHTS" in note
    refused, note = resolve_random_weights(fresh, False)
    assert refused.allow_random_weights is False
    assert "--no-allow-random-weights" in note
    checkpoint = tmp_path / "capf.bin"
    with_checkpoint = fresh.model_copy(
        update={"models": {"capf": ModelSpec(kind=LifterKind.CAPF, arch="capf-w32", checkpoint=checkpoint)}}
    )
    kept, note = resolve_random_weights(with_checkpoint, None)
    assert kept.allow_random_weights is False
    assert "--allow-random-weights" in note
    monkeypatch.setenv("POSE3D_ALLOW_RANDOM_WEIGHTS", "false")
    from_env, note = resolve_random_weights(build_settings(GatewaySettings), None)
    assert from_env.allow_random_weights is False
    assert "POSE3D_ALLOW_RANDOM_WEIGHTS" in note


def _grpc_health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    status: int = response.status
    return status


def _serve(config: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSE3D_")}
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        [*command, "--config", str(config), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_pose3d_serve_on_a_fresh_machine_serves_random_weights_loudly(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    port, grpc_port = free_port(), free_port()
    process = _serve(config, port, "--grpc-port", str(grpc_port))
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert ready is not None, "pose3d serve did not answer"
        assert ready.status_code == 200
        assert "RANDOM" in ready.json()["detail"]["weights"]
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()["models"]
        assert {m["weights"] for m in models} == {"random"}
        # the embedded service answers gRPC too; health follows the engine (polled about once a second)
        health_deadline = time.monotonic() + 120  # a budget for a busy machine
        while _grpc_health(grpc_port) != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < health_deadline, "gRPC health never turned SERVING"
            time.sleep(0.2)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"listening on http://127.0.0.1:{port}" in output
    assert "serves RANDOM WEIGHTS" in output
    assert "!!! model 'capf'" in output


@pytest.mark.slow
def test_pose3d_serve_refuses_random_weights_when_told(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    process = _serve(config, free_port(), "--no-allow-random-weights")
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "no checkpoint configured" in output
    assert "random weights refused" in output
