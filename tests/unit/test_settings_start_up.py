"""Settings that validate must also start: a value the process cannot use is refused when the settings are built, so
``pose3d serve|gateway|worker`` stops in one line and exit 2 (:mod:`service.startup`) — never a traceback after the
models have loaded, nor a server that refuses every request."""

from __future__ import annotations

import math
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.cli import main
from service.config import GRPC_MAX_MESSAGE_BYTES, MAX_TTL_S, GatewaySettings, WorkerSettings, build_settings
from service.engine.framebuffer import StreamMeta
from service.engine.framebuffer.redis import RedisFrameBuffer
from service.engine.types import WindowMode
from service.engine.windows import WindowSpec
from service.gateway.app import create_app
from service.jobs.redis import RedisJobStore
from service.jobs.store import JobRecord, new_job_id
from service.rpc.server import channel_options, new_server
from tests.conftest import REPO, RedisServer, free_port
from tests.unit.test_framebuffer import make_record


@pytest.mark.parametrize(
    "url", ["localhost:6379", "http://localhost:6379", "redis://localhost:port", "redis+cluster://[::1"]
)
@pytest.mark.parametrize("command", ["serve", "gateway", "worker"])
def test_a_redis_url_redis_cannot_open_is_one_line_and_exit_2(
    command: str, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POSE3D_REDIS_URL", url)
    assert main([command, "--allow-random-weights", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"pose3d {command}: error: invalid settings (redis_url: "), err


@pytest.mark.parametrize("ttl_s", [math.inf, 1e300, MAX_TTL_S * 2])
@pytest.mark.parametrize("field", ["engine.stream_ttl_s", "jobs.ttl_s"])
def test_a_ttl_redis_cannot_hold_is_refused(field: str, ttl_s: float) -> None:
    """``inf`` stopped a Redis-backed worker or gateway with OverflowError after loading; 1e300 started, and then every
    stream open (or job submission) was a retryable 503 for ever: Redis refuses the expiry."""
    group, name = field.split(".")
    with pytest.raises(ValidationError, match=name):
        build_settings(GatewaySettings, None, **{group: {name: ttl_s}})


@pytest.mark.redis
async def test_the_longest_ttl_works_on_redis(redis_server: RedisServer) -> None:
    settings = build_settings(GatewaySettings, engine={"stream_ttl_s": MAX_TTL_S}, jobs={"ttl_s": MAX_TTL_S})
    buffer = RedisFrameBuffer(redis_server.url, settings.engine.stream_ttl_s)
    jobs = RedisJobStore(redis_server.url, settings.jobs.ttl_s, prefix="t" + secrets.token_hex(4))
    try:
        sid = "ttl-" + secrets.token_hex(4)
        await buffer.create(StreamMeta(sid, "pstmo", WindowMode.CAUSAL, flip_test=False))
        emission = await buffer.append(sid, make_record(0), WindowSpec(), WindowMode.CAUSAL)
        assert emission.targets == range(1)
        job = new_job_id("")
        await jobs.create(JobRecord(job_id=job, kind="clip", request_id="r", created_s=1.0, params={}), b"x")
        assert (await jobs.get(job)).job_id == job
    finally:
        await buffer.aclose()
        await jobs.aclose()


def test_a_retry_after_no_header_can_carry_is_refused() -> None:
    """``inf`` started a gateway whose /readyz (while the engine loads) and other refusals were 500s: the
    Retry-After header's whole seconds (OverflowError)."""
    with pytest.raises(ValidationError, match="retry_after_s"):
        build_settings(GatewaySettings, None, limits={"retry_after_s": math.inf})


def test_the_longest_retry_after_is_sent() -> None:
    settings = build_settings(GatewaySettings, None, limits={"retry_after_s": 3600.0})
    client = TestClient(create_app(settings))  # no lifespan: the engine is still loading
    response = client.get("/readyz")
    assert (response.status_code, response.headers["Retry-After"]) == (503, "3600")


@pytest.mark.parametrize("command", ["serve", "gateway"])
def test_one_port_for_rest_and_grpc_is_one_line_and_exit_2(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """gRPC took the port first, and uvicorn then logged its bind error and exited 3 (after the models loaded)."""
    port = str(free_port())
    assert main([command, "--allow-random-weights", "--port", port, "--grpc-port", port]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"pose3d {command}: error: invalid settings (settings: Value error, port and grpc_port")


def test_one_port_for_worker_grpc_and_metrics_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    port = str(free_port())
    assert main(["worker", "--allow-random-weights", "--port", port, "--metrics-port", port]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "port and metrics_port are both" in err[0], err


def test_a_taken_metrics_port_is_one_line_naming_it(tmp_path: Path) -> None:
    """The default metrics port (9100) is node_exporter's too. The worker said 'Address already in use' naming
    --port / --grpc-port only, and then Python printed the unstopped gRPC server's 'Event loop is closed' traceback."""
    port, metrics_port = free_port(), free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", metrics_port))
        taken.listen()
        argv = ["--allow-random-weights", "--port", str(port), "--metrics-port", str(metrics_port)]
        done = subprocess.run(
            [sys.executable, "-m", "service.cli", "worker", *argv],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
        )
    assert done.returncode == 2, done.stderr
    err = [line for line in done.stderr.strip().splitlines() if " INFO " not in line]
    assert err == [err[-1]], done.stderr  # one line, no traceback after it
    assert err[0].startswith("pose3d worker: error: "), err
    assert f"cannot listen on 127.0.0.1:{metrics_port} (worker metrics)" in err[0], err
    assert "--metrics-port" in err[0], err


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        ("worker", "POSE3D_MAX_MESSAGE_BYTES"),
        ("gateway", "POSE3D_WORKER_MAX_MESSAGE_BYTES"),
        ("gateway", "POSE3D_LIMITS__MAX_BODY_BYTES"),
        ("serve", "POSE3D_LIMITS__MAX_BODY_BYTES"),
    ],
)
def test_a_message_limit_grpc_cannot_take_is_one_line_and_exit_2(
    command: str, variable: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past 2**31 - 1 bytes gRPC's channel arguments overflowed: OverflowError's traceback (the worker's after its
    models loaded)."""
    monkeypatch.setenv(variable, str(4 * 1024**3))
    argv = [command, "--allow-random-weights", "--port", "0"]
    assert main(argv + (["--workers", "127.0.0.1:1"] if command == "gateway" else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"pose3d {command}: error: invalid settings ("), err


async def test_the_largest_message_limits_make_grpc_servers_and_channels() -> None:
    worker = build_settings(WorkerSettings, None, max_message_bytes=GRPC_MAX_MESSAGE_BYTES)
    gateway = build_settings(GatewaySettings, None, limits={"max_body_bytes": GRPC_MAX_MESSAGE_BYTES - 2**20})
    for limit in (worker.max_message_bytes, gateway.limits.max_body_bytes, gateway.worker_message_limit()):
        await new_server(limit).stop(None)
        await grpc.aio.insecure_channel("127.0.0.1:1", options=channel_options(limit)).close()


@pytest.mark.parametrize("name", ["pose3d.toml", "pose3d.yaml"])
@pytest.mark.parametrize("command", ["serve", "gateway", "worker"])
def test_a_settings_file_not_in_utf8_is_one_line_and_exit_2(
    command: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Saved as UTF-16 (Windows Notepad's "Unicode"): UnicodeDecodeError's traceback, exit 1."""
    config = tmp_path / name
    config.write_text("port = 9000\n" if name.endswith(".toml") else "port: 9000\n", encoding="utf-16")
    assert main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"pose3d {command}: error: {config}: not UTF-8 text"), err
    assert err[0].endswith("— fix the --config file"), err


@pytest.mark.parametrize("text", ["1: x\n", "null: 3\n", "port: 9000\n2.5: y\n"])
def test_a_yaml_key_that_is_no_name_is_one_line_and_exit_2(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A top-level YAML key read as a number or null: AttributeError's traceback ('int' has no 'lower'), exit 1."""
    config = tmp_path / "pose3d.yaml"
    config.write_text(text)
    assert main(["gateway", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"pose3d gateway: error: {config}: top-level key "), err


@pytest.mark.parametrize(
    ("variable", "value"),
    [("POSE3D_WORKERS", "w1:50061,w2:50061"), ("POSE3D_MODELS", "pstmo"), ("POSE3D_LIMITS", "{max_people: 3}")],
)
@pytest.mark.parametrize("command", ["serve", "gateway"])
def test_a_variable_for_a_list_or_table_that_is_not_json_is_one_line_and_exit_2(
    command: str, variable: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """pydantic-settings' SettingsError ('error parsing value for field "workers"') escaped as a traceback, exit 1 —
    POSE3D_WORKERS written as --workers takes it (comma-separated) is the likely slip."""
    monkeypatch.setenv(variable, value)
    assert main([command]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    field = variable.removeprefix("POSE3D_").lower()
    assert err[0].startswith(f'pose3d {command}: error: error parsing value for field "{field}"'), err
    assert "takes JSON" in err[0], err


@pytest.mark.parametrize("command", ["gateway", "worker"])
def test_a_taken_grpc_port_is_one_line_and_exit_2(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """grpc raises RuntimeError ('Failed to bind to address') where the code expected a bound port of 0: the most common
    start-up mistake was a traceback, exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        if command == "gateway":
            argv = ["gateway", "--workers", "127.0.0.1:1", "--port", str(free_port()), "--grpc-port", port]
        else:
            argv = ["worker", "--allow-random-weights", "--port", port, "--metrics-port", "0"]
        assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if " INFO " not in line]
    assert len(err) == 1, err
    assert err[0].startswith(f"pose3d {command}: error: "), err
    assert f"cannot listen on 127.0.0.1:{port}" in err[0], err


def test_tls_files_that_are_not_pem_are_one_line_naming_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """grpc only logged 'Handshaker factory creation failed' and failed to bind: a traceback before, and with a
    taken port told apart from a refused bind, it would read 'the address is in use'."""
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("not a PEM file\n")
    monkeypatch.setenv("POSE3D_SECURITY__TLS_CERTFILE", str(tmp_path / "cert.pem"))
    monkeypatch.setenv("POSE3D_SECURITY__TLS_KEYFILE", str(tmp_path / "key.pem"))
    argv = ["gateway", "--workers", "127.0.0.1:1", "--port", str(free_port()), "--grpc-port", str(free_port())]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if " INFO " not in line]
    assert len(err) == 1, err
    assert "TLS files that are not PEM" in err[0], err
    assert "security.tls_certfile" in err[0], err
    assert "in use" not in err[0], err
