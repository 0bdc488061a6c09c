"""The compose deployment run for real under podman + podman-compose (deploy/podman): one project per test run
(its own name, free host ports, keys and weights in a temporary directory), tiny random-weight models through the
settings the compose file already takes, and the checks that nothing is left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, free_port

DEPLOY = REPO / "deploy"
IMAGE = "localhost/pose3d:compose-test"
POSE3D_SERVICES = ("worker-1", "worker-2", "gateway")
# the main file, the images built here (no registry), tiny random-weight models through POSE3D_* settings
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.podman.yml", "docker-compose.tiny.yml")
STARTED_SERVICES = ("redis", *POSE3D_SERVICES, "prometheus")
CONTAINER_UID = 10001  # USER in docker/Dockerfile


def run(args: list[str], env: Mapping[str, str] | None = None, timeout_s: float = 900) -> str:
    """``args`` run to completion; its output, or a failure showing it."""
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def require_podman() -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: `make containers` (which `make test` runs as root) installs it")
    if os.geteuid() != 0:
        pytest.skip("the compose run needs root (rootful podman, a key file chowned to the container's uid)")


def build_image() -> None:
    """The pose3d image, from the local base (cached layers: seconds when nothing changed)."""
    run(["sh", str(DEPLOY / "podman" / "setup.sh"), sys.executable])
    run(["sh", str(DEPLOY / "podman" / "build.sh"), IMAGE])


def create_key(secrets: Path) -> str:
    """An API key in ``secrets/api-keys.json``, readable by the container's user (uid 10001)."""
    keys_file = secrets / "api-keys.json"
    out = run(
        [sys.executable, "-m", "service.cli", "keys", "create", "--name", "compose-test", "--file", str(keys_file)]
    )
    os.chown(keys_file, CONTAINER_UID, CONTAINER_UID)  # the gateway (uid 10001) reads it; mode 0600 stays
    secrets.chmod(0o755)
    return out.rsplit(":", 1)[1].strip()


@dataclass
class ComposeProject:
    """``podman-compose -p <unique> -f docker-compose.yml -f docker-compose.podman.yml -f docker-compose.tiny.yml``."""

    tmp: Path
    name: str = field(default_factory=lambda: f"pose3d-test-{uuid.uuid4().hex[:8]}")
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    api_key: str = ""
    is_down: bool = False

    def __post_init__(self) -> None:
        (self.tmp / "weights").mkdir()
        (self.tmp / "secrets").mkdir()
        self.api_key = create_key(self.tmp / "secrets")

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            IMAGE=IMAGE,
            WEIGHTS_DIR=str(self.tmp / "weights"),
            SECRETS_DIR=str(self.tmp / "secrets"),
            HTTP_PORT=str(self.http_port),
            GRPC_PORT=str(self.grpc_port),
            PROMETHEUS_PORT=str(self.prometheus_port),
        )
        return env

    def compose(self, *args: str, timeout_s: float = 600) -> str:
        files = [f"--file={DEPLOY / name}" for name in COMPOSE_FILES]
        command = [sys.executable, "-m", "podman_compose", "-p", self.name, *files, *args]
        return run(command, env=self.env, timeout_s=timeout_s)

    def down(self) -> None:
        """``down -v`` (volumes too), once."""
        if not self.is_down:
            self.is_down = True
            self.compose("down", "-v", "-t", "5")

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def logs(self) -> str:
        out = []
        for service in STARTED_SERVICES:
            done = subprocess.run(["podman", "logs", "--tail", "30", self.container(service)], capture_output=True)
            out.append(f"--- {service}\n{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}")
        return "\n".join(out)

    def healthy(self, service: str) -> bool:
        """The image's HEALTHCHECK run now (podman 4.3 runs it only when asked)."""
        done = subprocess.run(["podman", "healthcheck", "run", self.container(service)], capture_output=True)
        return done.returncode == 0

    def wait_ready(self, timeout_s: float = 600) -> dict[str, Any]:
        """Every pose3d container healthy and the gateway's ``/readyz`` 200 through its published port."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            try:
                reply = httpx.get(self.http + "/readyz", timeout=5)
                last = reply.json()
                if reply.status_code == 200 and all(self.healthy(s) for s in POSE3D_SERVICES):
                    return dict(last)
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(1)
        pytest.fail(f"the deployment was not ready after {timeout_s} s (last /readyz: {last}):\n{self.logs()}")

    def prometheus_targets(self) -> list[dict[str, Any]]:
        reply = httpx.get(f"http://127.0.0.1:{self.prometheus_port}/api/v1/targets", timeout=5)
        reply.raise_for_status()
        targets: list[dict[str, Any]] = reply.json()["data"]["activeTargets"]
        return targets

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, pods, networks and volumes of this project still present."""
        label = f"label=io.podman.compose.project={self.name}"
        found = {
            "containers": run(["podman", "ps", "-a", "--filter", label, "--format", "{{.Names}}"]),
            "pods": run(["podman", "pod", "ps", "--filter", f"name={self.name}", "--format", "{{.Name}}"]),
            "networks": run(["podman", "network", "ls", "--format", "{{.Name}}"]),
            "volumes": run(["podman", "volume", "ls", "--format", "{{.Name}}"]),
        }
        return {kind: [n for n in out.split() if self.name in n] for kind, out in found.items()}
