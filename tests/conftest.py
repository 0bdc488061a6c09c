"""Shared fixtures: the repo's own test data (tests/data), a real redis-server on a free port, tiny deterministic torch."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import settings as hypothesis_settings

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
CONFORMANCE = DATA / "conformance"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# CI (CI=true) replays the same property/fuzz examples every run so a red build is reproducible; local runs
# keep exploring new examples (and record failures in .hypothesis/ for replay).
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10_000


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, below the kernel's ephemeral range where it can: a port handed out by
    ``bind(0)`` and closed again may become the local port of one of the suite's own outgoing connections before the
    server under test binds it (``Address already in use`` in a gateway started a moment later); outgoing
    connections never take a port below that range."""
    try:
        first_ephemeral = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = LOWEST_PORT
    for _ in range(200 if first_ephemeral > LOWEST_PORT else 0):
        port = LOWEST_PORT + secrets.randbelow(first_ephemeral - LOWEST_PORT)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        chosen: int = s.getsockname()[1]
        return chosen


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    if not CONFORMANCE.is_dir():
        pytest.fail(f"conformance vectors not found at {CONFORMANCE} (they are part of the repository)")
    return CONFORMANCE


class RedisServer:
    """A redis-server process of our own, on a free port, with no persistence (a restart loses every key)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        """Start redis-server on this server's port (again, after :meth:`stop`) and wait until it answers."""
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed (make test installs it with apt-get)")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60  # a budget for a busy machine
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail("redis-server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
