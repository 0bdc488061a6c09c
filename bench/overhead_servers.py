"""The served layers of ``bench.overhead``: ``pose3d serve`` (REST + gRPC, in-process engine) and
``pose3d worker`` + ``pose3d gateway --workers`` (REST + gRPC, remote engine), child processes on free loopback
ports, every one configured by one settings file of the same tiny random-weight models."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import grpc
import httpx
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]


def model_settings(threads: int, max_delay_ms: float | None = None) -> dict[str, Any]:
    """The settings shared by the bench's engine and every child: hrnet-micro detector → CA-PF tiny (images) and
    P-STMO tiny 9 (keypoints), random weights, no flip test, ``threads`` torch threads, shipped batch defaults
    (``engine.max_delay_ms`` = ``max_delay_ms`` when given)."""
    delay = {} if max_delay_ms is None else {"max_delay_ms": max_delay_ms}
    return {
        "allow_random_weights": True,
        "log_level": "warning",
        "detector": {"arch": "hrnet-micro", "flip_test": False},
        "models": {
            "capf": {"kind": "capf", "arch": "capf-tiny", "flip_test": False},
            "pstmo": {"kind": "pstmo", "arch": "pstmo-tiny-9", "frames": 9, "flip_test": False},
        },
        "default_image_model": "capf",
        "default_clip_model": "pstmo",
        "engine": {"torch_threads": threads, "request_timeout_s": 120.0, **delay},
    }


@dataclass(frozen=True)
class Endpoints:
    """Where a served layer answers: REST base URL and public gRPC ``host:port``."""

    rest: str
    grpc: str


class Child:
    """One ``python -m service.cli <args>`` process, its log in ``log``, stopped (TERM, then KILL) on close."""

    def __init__(self, args: list[str], log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSE3D_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.log = log
        self._out: IO[bytes] = log.open("wb")
        cmd = [sys.executable, "-m", "service.cli", *args]
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT)

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            raise SystemExit(f"{self.proc.args!r} exited with {self.proc.returncode}:\n{tail}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def _serving(address: str, service: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(children: list[Child], ready: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in children:
            child.check()
        if ready():
            return
        time.sleep(0.2)
    raise SystemExit(f"not ready within {timeout_s:g} s: see {[str(c.log) for c in children]}")


class Served:
    """``remote=False``: ``pose3d serve`` (engine in the server process); ``remote=True``: a ``pose3d worker`` and
    a ``pose3d gateway`` routing to it over gRPC. Ready (REST ``/readyz`` and gRPC health) when entered."""

    def __init__(self, settings: dict[str, Any], workdir: Path, remote: bool, start_timeout_s: float = 300.0) -> None:
        self.settings, self.workdir, self.remote, self.timeout = settings, workdir, remote, start_timeout_s
        self._stack = ExitStack()
        port, grpc_port = free_port(), free_port()
        self.endpoints = Endpoints(f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}")
        self._gateway = {"host": "127.0.0.1", "port": port, "grpc_port": grpc_port}

    def _config(self, name: str, extra: dict[str, Any]) -> str:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**self.settings, **extra}))
        return str(path)

    def _start(self, name: str, args: list[str]) -> Child:
        child = Child(args, self.workdir / f"{name}.log")
        self._stack.callback(child.close)
        return child

    def __enter__(self) -> Endpoints:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            children = []
            extra = dict(self._gateway)
            if self.remote:
                worker_port = free_port()
                conf = self._config("worker", {})
                args = ["worker", "--config", conf, "--host", "127.0.0.1", "--port", str(worker_port)]
                worker = self._start("worker", [*args, "--metrics-port", "0"])
                _wait([worker], lambda: _serving(f"127.0.0.1:{worker_port}", "pose3d.worker.v1.Worker"), self.timeout)
                children.append(worker)
                extra["workers"] = [f"127.0.0.1:{worker_port}"]
            command = "gateway" if self.remote else "serve"
            children.append(self._start(command, [command, "--config", self._config(command, extra)]))
            ep = self.endpoints
            _wait(children, lambda: _ready(ep.rest) and _serving(ep.grpc, "pose3d.v1.Pose3D"), self.timeout)
        except BaseException:
            self._stack.close()
            raise
        return self.endpoints

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stack.close()
