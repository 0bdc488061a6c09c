"""Real processes as deployed: ``pose3d worker`` ×N and ``pose3d gateway`` on free ports, tiny random-weight models.

Models come through the environment exactly as an operator would configure them (``POSE3D_*``).
Each process logs to a file under the test's temporary directory (shown when a start fails).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import REPO, free_port

TINY_MODELS = {
    "capf": {"kind": "capf", "arch": "capf-tiny", "flip_test": False},
    "pstmo-9": {"kind": "pstmo", "arch": "pstmo-tiny-9", "frames": 9},
}


def deployment_env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "POSE3D_ALLOW_RANDOM_WEIGHTS": "true",
            "POSE3D_REDIS_URL": redis_url,
            "POSE3D_DETECTOR": json.dumps({"arch": "hrnet-micro", "flip_test": False}),
            "POSE3D_MODELS": json.dumps(TINY_MODELS),
            "POSE3D_DEFAULT_IMAGE_MODEL": "capf",
            "POSE3D_DEFAULT_CLIP_MODEL": "pstmo-9",
            "POSE3D_ENGINE__REQUEST_TIMEOUT_S": "120",
            "POSE3D_ENGINE__MAX_DELAY_MS": "1",
            "POSE3D_LOG_LEVEL": "info",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def pose3d_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", *args]


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye, as a crash or an OOM kill."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


def health_status(address: str, service: str = "") -> str:
    """``SERVING`` / ``NOT_SERVING`` / ``UNREACHABLE`` of ``grpc.health.v1`` at ``address``."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
        except grpc.RpcError:
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


@dataclass
class Worker(Proc):
    port: int = 0
    metrics_port: int = 0
    seen_health: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def poll_health(self) -> str:
        """Check health once, recording each change of status; raises if the process died."""
        status = health_status(self.address, "pose3d.worker.v1.Worker")
        if not self.seen_health or self.seen_health[-1] != status:
            self.seen_health.append(status)
        if status != "SERVING" and not self.alive():
            raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
        return status

    def metric(self, name: str, labels: str = "") -> float:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and labels in line and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total


def wait_all_serving(workers: list[Worker], timeout_s: float = 180.0) -> None:
    """Poll every worker's health together until all are SERVING (so each one's loading phase is seen)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all([w.poll_health() == "SERVING" for w in workers]):  # noqa: C419 — poll every worker each round
            return
        time.sleep(0.1)
    raise TimeoutError("workers not serving after {timeout_s} s:\n" + "\n".join(w.tail() for w in workers))


def new_worker(name: str, env: dict[str, str], logs: Path) -> Worker:
    port, metrics_port = free_port(), free_port()
    args = pose3d_command("worker", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(metrics_port))
    return Worker(name, args, env, logs / f"{name}.log", port=port, metrics_port=metrics_port)


@dataclass
class Gateway(Proc):
    port: int = 0
    grpc_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def wait_listening(self, timeout_s: float = 120.0) -> None:
        """Until ``/healthz`` answers (ready or not: a gateway whose workers refuse it still listens)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not listening after {timeout_s} s:\n{self.tail()}")

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                rest_ready = httpx.get(self.url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                rest_ready = False
            if rest_ready and health_status(self.grpc_address, "pose3d.v1.Pose3D") == "SERVING":
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout_s} s:\n{self.tail()}")


def new_gateway(workers: list[Worker], env: dict[str, str], logs: Path, port: int = 0, grpc_port: int = 0) -> Gateway:
    port, grpc_port = port or free_port(), grpc_port or free_port()
    args = pose3d_command(
        "gateway", "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port),
        "--workers", ",".join(w.address for w in workers),
    )  # fmt: skip
    return Gateway("gateway", args, env, logs / "gateway.log", port=port, grpc_port=grpc_port)
