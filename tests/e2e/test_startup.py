"""Start-up failures print one line naming the fix (no traceback); SIGINT and SIGTERM shut `pose3d` down cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port
from tests.service.test_rest_settings import TINY_TOML

pytestmark = pytest.mark.e2e

SECRET = "S3cretPassw0rd"


def _pose3d(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POSE3D_")}
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args],
        cwd=REPO,
        env={**clean, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _fails_with_one_line(process: subprocess.Popen[str], *expected: str) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2, (out, err)
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1, err
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    return config


def test_random_weights_refused_names_the_flag(tiny_config: Path) -> None:
    worker_fields = TINY_TOML.split("[limits]")[0].replace("grpc_port = 0\n", "")  # a worker has no REST limits
    tiny_config.write_text(worker_fields)
    worker = _pose3d("worker", "--host", "127.0.0.1", "--port", str(free_port()), "--metrics-port", "0",
                     "--config", str(tiny_config))  # fmt: skip
    _fails_with_one_line(worker, "pose3d worker: error:", "--allow-random-weights", "models.")


def test_missing_checkpoint_names_the_setting(tiny_config: Path, tmp_path: Path) -> None:
    tiny_config.write_text(
        TINY_TOML.replace('arch = "capf-tiny"', f'arch = "capf-tiny"\ncheckpoint = "{tmp_path}/nope.pth"')
    )
    serve = _pose3d("serve", "--host", "127.0.0.1", "--port", str(free_port()), "--config", str(tiny_config))
    _fails_with_one_line(serve, "nope.pth", "models.capf.checkpoint")


def test_port_in_use_names_the_flag(tiny_config: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = _pose3d("serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(tiny_config))
        _fails_with_one_line(serve, f"127.0.0.1:{port}", "--port")


def test_invalid_setting_names_the_field(tiny_config: Path) -> None:
    serve = _pose3d("serve", "--config", str(tiny_config), env={"POSE3D_ENGINE__MAX_BATCH_SIZE": "many"})
    _fails_with_one_line(serve, "invalid settings", "engine.max_batch_size")


def _wait_ready(process: subprocess.Popen[str], port: int) -> None:
    for _ in range(1200):  # a budget for a busy machine (~10 min), not a speed claim
        assert process.poll() is None, process.communicate()
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return
        except httpx.TransportError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(0.5)
    pytest.fail("pose3d serve never answered /healthz")


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "codes"), [(signal.SIGINT, {0, 130}), (signal.SIGTERM, {0})])
def test_signals_shut_down_cleanly_and_redis_secrets_stay_out_of_logs(
    tiny_config: Path, sig: signal.Signals, codes: set[int]
) -> None:
    port = free_port()
    redis_url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"  # nothing listens there
    serve = _pose3d("serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(tiny_config),
                    env={"POSE3D_REDIS_URL": redis_url})  # fmt: skip
    _wait_ready(serve, port)
    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30)
    assert ready.status_code == 503
    assert SECRET not in ready.text
    serve.send_signal(sig)
    out, err = serve.communicate(timeout=120)
    assert serve.returncode in codes, (serve.returncode, err)
    assert "Traceback" not in out + err
    assert SECRET not in out + err
    assert "POSE3D_REDIS_URL" in err  # the one warning that Redis does not answer names the setting
