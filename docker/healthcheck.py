"""Container health check for the pose3d image: exit 0 when the process in this container is healthy, else 1.

    healthcheck.py worker  [--port 50061]   # grpc.health.v1 Check("") == SERVING (models loaded and warm)
    healthcheck.py gateway [--port 8000]    # GET /healthz == 200 (alive; /readyz is for load balancers)
    healthcheck.py serve   [--port 8000]    # as gateway
    healthcheck.py                          # role and --port read from PID 1's command line (the image's
                                            # ENTRYPOINT is `pose3d`, so PID 1 is `... pose3d worker --port N`)

Without ``--port``: the port on PID 1's command line, else ``POSE3D_PORT``, else the role's default.
Stdlib + grpcio only (both in the image); it never imports torch, so it runs in well under a second.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_PORTS = {"worker": 50061, "gateway": 8000, "serve": 8000}
TIMEOUT_S = 3.0


def role_and_port(cmdline: Sequence[str], env: Mapping[str, str]) -> tuple[str, int]:
    """The pose3d subcommand and its listening port from a process's argv (``/proc/1/cmdline``)."""
    role = next((arg for arg in cmdline if arg in DEFAULT_PORTS), None)
    if role is None:
        raise ValueError(f"not a pose3d worker/gateway/serve command line: {' '.join(cmdline)!r}")
    port: int | None = None
    for i, arg in enumerate(cmdline):
        if arg == "--port" and i + 1 < len(cmdline):
            port = int(cmdline[i + 1])
        elif arg.startswith("--port="):
            port = int(arg.split("=", 1)[1])
    if port is None:
        port = int(env["POSE3D_PORT"]) if env.get("POSE3D_PORT") else DEFAULT_PORTS[role]
    return role, port


def grpc_serving(port: int) -> bool:
    """True when ``grpc.health.v1.Health/Check`` for the overall service ("") answers SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_alive(port: int) -> bool:
    """True when ``GET /healthz`` answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT_S) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pose3d container health check")
    parser.add_argument("role", nargs="?", choices=sorted(DEFAULT_PORTS), help="default: read from PID 1")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    if args.role is None:
        pid1 = Path("/proc/1/cmdline").read_bytes().split(b"\0")
        role, port = role_and_port([part.decode() for part in pid1 if part], os.environ)
        port = args.port if args.port is not None else port
    else:
        role = args.role
        port = args.port if args.port is not None else role_and_port([role], os.environ)[1]
    healthy = grpc_serving(port) if role == "worker" else http_alive(port)
    print(f"pose3d {role} on port {port}: {'healthy' if healthy else 'UNHEALTHY'}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
