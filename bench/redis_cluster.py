"""A Redis Cluster of the benchmark's (and the tests') own: three ``redis-server --cluster-enabled yes`` on free
loopback ports (client and bus ports both free), joined with ``redis-cli --cluster create``, no replicas, no
persistence. Imports nothing of the project."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.redis_server import free_port

NODES = 3


def _exe(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise SystemExit(f"{name} not found (apt-get install redis-server redis-tools)")
    return exe


def _answers(command: list[str], expected: str) -> Callable[[], bool]:
    """Whether ``command``'s output contains ``expected`` (checked at each call)."""

    def check() -> bool:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
        return expected in done.stdout

    return check


@dataclass
class RedisClusterServers:
    """Three cluster nodes under ``workdir``; :meth:`start` forms the cluster, :meth:`stop` ends every node."""

    workdir: Path
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The URL the project's settings take (``redis_url``): one node, the client finds the rest."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self, timeout_s: float = 120.0) -> RedisClusterServers:
        server, cli = _exe("redis-server"), _exe("redis-cli")
        for i in range(NODES):
            port, bus = free_port(), free_port()
            node_dir = self.workdir / f"node-{i}"
            node_dir.mkdir(parents=True, exist_ok=True)
            args = [server, "--port", str(port), "--cluster-port", str(bus), "--bind", "127.0.0.1",
                    "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
                    "--save", "", "--appendonly", "no", "--dir", str(node_dir)]  # fmt: skip
            self.ports.append(port)
            self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + timeout_s
        for port in self.ports:
            self._wait(_answers([cli, "-p", str(port), "ping"], "PONG"), deadline)
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        subprocess.run([cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=timeout_s)  # fmt: skip
        for port in self.ports:
            self._wait(_answers([cli, "-p", str(port), "cluster", "info"], "cluster_state:ok"), deadline)
        return self

    def _wait(self, ready: Callable[[], bool], deadline: float) -> None:
        while not ready():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Redis Cluster on ports {self.ports} did not become ready")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
