"""``pose3d serve``: the embedded service — the gateway (REST + gRPC) with the engine in this process."""

from __future__ import annotations

import argparse
import asyncio
import logging

from service.assembly import in_process_engine
from service.commands.common import add_common_arguments, configure_logging, settings_from_args
from service.config import GatewaySettings, refuse_unserved_defaults, resolve_random_weights
from service.profiles import profile_names, profile_path

log = logging.getLogger("pose3d")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the REST gateway with the engine in this process. With no checkpoint configured "
        "anywhere it serves random weights (and says so loudly); see --allow-random-weights."
    )
    add_common_arguments(
        parser,
        GatewaySettings,
        "serve models without checkpoints on random weights (default for `serve`: on only when no "
        "checkpoint is configured anywhere; otherwise off)",
        ports=True,
    )
    parser.add_argument(
        "--weights", default=None, metavar="SET", help="a complete weights set (see `pose3d weights list`)"
    )
    parser.add_argument(
        "--profile", choices=profile_names(), help="a shipped settings file instead of --config (realtime: a CPU)"
    )


def run(args: argparse.Namespace) -> int:
    """The gateway over an in-process engine until SIGTERM/SIGINT."""
    from service.gateway.grpc_server import run_gateway
    from service.redaction import redact
    from service.security.tls import rest_scheme
    from service.weights.resolve import weight_set_overrides

    if args.profile and not args.config:
        args.config = str(profile_path(args.profile))
    weights = weight_set_overrides(args.weights) if args.weights else {}
    settings = settings_from_args(
        GatewaySettings, args, port=args.port, grpc_port=args.grpc_port, workers=[], **weights
    )
    refuse_unserved_defaults(settings, settings.models)  # the engine in this process serves these
    settings, weights_note = resolve_random_weights(settings, args.allow_random_weights)
    configure_logging(settings)
    log.log(logging.WARNING if settings.allow_random_weights else logging.INFO, "%s", weights_note)

    def listening(port: int) -> None:
        log.info(
            "pose3d serve: listening on %s://%s:%d (REST, API docs at /docs) and gRPC port %s; engine in-process "
            "on %s, frame buffer %s",
            rest_scheme(settings.security),
            settings.host,
            port,
            settings.grpc_port or "off",
            settings.device.value,
            "redis " + redact(settings.redis_url) if settings.redis_url else "in memory",
        )

    asyncio.run(run_gateway(settings, in_process_engine, listening))
    return 0
