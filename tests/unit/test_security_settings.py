"""When API keys are required, and what the gateway says about it at start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.config import GatewaySettings, SecuritySettings
from service.metrics import Metrics
from service.security.guard import Security, SecurityConfigError, auth_enabled, auth_summary, is_loopback
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("host", "mode", "required"),
    [("127.0.0.1", "auto", False), ("::1", "auto", False), ("localhost", "auto", False), ("0.0.0.0", "auto", True),
     ("10.1.2.3", "auto", True), ("0.0.0.0", "off", False), ("127.0.0.1", "on", True)],
)  # fmt: skip
def test_keys_required_off_loopback_unless_set(host: str, mode: str, required: bool) -> None:
    settings = GatewaySettings(host=host, security=SecuritySettings(auth=mode, api_keys_file=Path("k.json")))
    assert auth_enabled(settings) is required
    assert auth_summary(settings).startswith("API keys required" if required else "API keys NOT required")
    assert is_loopback(host) is (host in {"127.0.0.1", "::1", "localhost"})


def test_required_keys_without_a_key_file_stop_the_start_with_the_fix() -> None:
    with pytest.raises(SecurityConfigError, match="POSE3D_SECURITY__API_KEYS_FILE"):
        Security(GatewaySettings(host="0.0.0.0"), Metrics())
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--host", "0.0.0.0", "--port", "0", "--grpc-port", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("pose3d serve: error: API keys are required"), last
    assert "pose3d keys create" in last
    assert "Traceback" not in done.stderr
