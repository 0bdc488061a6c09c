"""``pose3d worker`` and ``pose3d gateway``: the deployment shape (gateways and workers as separate processes).

Unlike ``pose3d serve``, these never turn random weights on by themselves: set
``POSE3D_ALLOW_RANDOM_WEIGHTS=true`` (or ``--allow-random-weights``) to run without checkpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from service.config import GatewaySettings, WorkerSettings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _overrides(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    values = {name: getattr(args, name, None) for name in names}
    if getattr(args, "allow_random_weights", None) is not None:
        values["allow_random_weights"] = args.allow_random_weights
    return values


def _cmd_worker(args: argparse.Namespace) -> int:
    from service.cli import build_settings
    from service.worker.server import run_worker

    settings = build_settings(
        WorkerSettings,
        Path(args.config) if args.config else None,
        **_overrides(args, "host", "port", "metrics_port"),
    )
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    asyncio.run(run_worker(settings))
    return 0


def _cmd_gateway(args: argparse.Namespace) -> int:
    from service.cli import build_settings
    from service.gateway.grpc_server import run_gateway

    overrides = _overrides(args, "host", "port", "grpc_port")
    if args.workers is not None:
        overrides["workers"] = [w.strip() for w in args.workers.split(",") if w.strip()]
    settings = build_settings(GatewaySettings, Path(args.config) if args.config else None, **overrides)
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    asyncio.run(run_gateway(settings))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="listen address (default 0.0.0.0)")
    parser.add_argument("--config", help="TOML or YAML settings file (env POSE3D_* still applies and wins)")
    parser.add_argument(
        "--allow-random-weights",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve models whose checkpoints are missing on random weights (default off)",
    )


def add_deployment_commands(sub: Any) -> None:
    """Register ``worker`` and ``gateway`` on the ``pose3d`` subparsers."""
    worker = sub.add_parser(
        "worker",
        help="serve the engine over gRPC (pose3d.worker.v1) for gateways",
        description="Load the models and serve them on --port (gRPC, with grpc.health.v1 and reflection) and "
        "Prometheus metrics on --metrics-port. Set POSE3D_REDIS_URL so any worker serves any stream.",
    )
    _common(worker)
    worker.add_argument("--port", type=int, default=None, help="gRPC port (default 50061)")
    worker.add_argument("--metrics-port", type=int, default=None, help="/metrics port (default 9100; 0 = off)")
    worker.set_defaults(func=_cmd_worker)

    gateway = sub.add_parser(
        "gateway",
        help="run the REST + gRPC gateway (remote workers with --workers, else the engine in-process)",
        description="Serve REST on --port and the public gRPC API (pose3d.v1.Pose3D, health, reflection) on "
        "--grpc-port, over the workers listed in --workers (round-robin, skipping unhealthy ones).",
    )
    _common(gateway)
    gateway.add_argument("--port", type=int, default=None, help="REST port (default 8000)")
    gateway.add_argument("--grpc-port", type=int, default=None, help="public gRPC port (default 50051; 0 = off)")
    gateway.add_argument("--workers", default=None, help="comma-separated worker addresses host:port")
    gateway.set_defaults(func=_cmd_gateway)
