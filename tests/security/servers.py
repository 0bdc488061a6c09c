"""Real ``pose3d serve`` processes for the security suite: tiny random-weight models, API keys required, free ports.

The suite attacks these as a stranger would (no key, a wrong key, oversized input before any key) and asserts the
refusals. One helper so each test module starts the same service the docs describe.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.security.keys import create_key
from tests.conftest import free_port
from tests.e2e.deployment import Proc, deployment_env, health_status, pose3d_command


@dataclass
class SecureServe:
    """A running ``pose3d serve`` that requires keys; ``key`` is a valid one."""

    proc: Proc
    port: int
    grpc_port: int
    key: str
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


def start_secure_serve(tmp: Path, extra_env: dict[str, str] | None = None, scheme: str = "http") -> SecureServe:
    """Start ``pose3d serve`` with ``security.auth=on`` and a fresh key file under ``tmp``; wait until ready."""
    keys = tmp / "keys.json"
    _, key = create_key(keys, "suite")
    port, grpc_port = free_port(), free_port()
    env = deployment_env("") | {
        "POSE3D_SECURITY__AUTH": "on",
        "POSE3D_SECURITY__API_KEYS_FILE": str(keys),
        "POSE3D_ENGINE__REQUEST_TIMEOUT_S": "60",
    }
    env |= extra_env or {}
    args = pose3d_command("serve", "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port))
    proc = Proc("serve", args, env, tmp / "serve.log")
    proc.start()
    server = SecureServe(proc, port, grpc_port, key, scheme)
    try:
        _wait_ready(server, env)
    except BaseException:
        proc.stop()
        raise
    return server


def _wait_ready(server: SecureServe, env: dict[str, str], timeout_s: float = 180.0) -> None:
    """Until the REST port answers ``/readyz`` 200 and gRPC health says SERVING (or the process dies)."""
    ca = env.get("POSE3D_TEST_CA")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.proc.alive():
            raise RuntimeError(f"serve exited:\n{server.proc.tail()}")
        try:
            verify = ssl.create_default_context(cafile=ca) if ca else True
            ready = httpx.get(server.url + "/readyz", timeout=2, verify=verify).status_code == 200
        except httpx.HTTPError:
            ready = False
        if ready and (ca is not None or health_status(server.grpc_address, "pose3d.v1.Pose3D") == "SERVING"):
            return
        time.sleep(0.1)
    raise TimeoutError(f"serve not ready after {timeout_s} s:\n{server.proc.tail()}")
