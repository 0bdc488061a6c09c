"""``pose3d worker``: the engine (models, batching, decoding) served over gRPC (``pose3d.worker.v1``) for gateways.

Like ``pose3d gateway`` it never turns random weights on by itself: set ``POSE3D_ALLOW_RANDOM_WEIGHTS=true``
(or ``--allow-random-weights``) to run without checkpoints.
"""

from __future__ import annotations

import argparse
import asyncio

from service.commands.common import add_common_arguments, configure_logging, settings_from_args
from service.config import WorkerSettings, refuse_unserved_defaults


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Load the models and serve them on --port (gRPC, with grpc.health.v1 and reflection) and "
        "Prometheus metrics on --metrics-port. Set POSE3D_REDIS_URL so any worker serves any stream."
    )
    add_common_arguments(parser, WorkerSettings)
    parser.add_argument("--port", type=int, default=None, help="gRPC port (default 50061)")
    parser.add_argument("--metrics-port", type=int, default=None, help="/metrics port (default 9100; 0 = off)")


def run(args: argparse.Namespace) -> int:
    """The worker until SIGTERM/SIGINT."""
    from service.worker.server import run_worker

    settings = settings_from_args(WorkerSettings, args, port=args.port, metrics_port=args.metrics_port)
    refuse_unserved_defaults(settings, settings.models)  # a call without a model gets a default of these
    configure_logging(settings)
    asyncio.run(run_worker(settings))
    return 0
