"""``pose3d gateway``: REST + public gRPC over the workers in ``--workers`` (else the engine in-process).

Unlike ``pose3d serve`` it never turns random weights on by itself. Over workers it never loads PyTorch:
:func:`service.assembly.build_engine_client` imports the in-process engine only when there are no workers.
"""

from __future__ import annotations

import argparse
import asyncio

from service.assembly import build_engine_client
from service.commands.common import add_common_arguments, configure_logging, settings_from_args
from service.config import GatewaySettings, refuse_unserved_defaults


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve REST on --port and the public gRPC API (pose3d.v1.Pose3D, health, reflection) on "
        "--grpc-port, over the workers listed in --workers (gRPC round_robin over the healthy ones)."
    )
    add_common_arguments(parser, GatewaySettings, ports=True)
    parser.add_argument("--workers", default=None, help="comma-separated worker addresses host:port")


def run(args: argparse.Namespace) -> int:
    """The gateway over ``--workers`` (or in-process) until SIGTERM/SIGINT."""
    from service.gateway.grpc_server import run_gateway

    workers = [w.strip() for w in args.workers.split(",") if w.strip()] if args.workers is not None else None
    settings = settings_from_args(GatewaySettings, args, port=args.port, grpc_port=args.grpc_port, workers=workers)
    if not settings.workers:  # in-process: its models are served; remote workers refuse their own at start-up
        refuse_unserved_defaults(settings, settings.models)
    configure_logging(settings)
    asyncio.run(run_gateway(settings, build_engine_client))
    return 0
