"""The ``pose3d`` command.

Settings precedence (highest first): command-line flags, environment (``POSE3D_*``, ``__`` nests),
the ``--config`` TOML/YAML file, defaults.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, TypeVar

from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource

from service.config import CommonSettings, GatewaySettings, load_settings_file
from service.profiles import profile_names, profile_path
from service.startup import redact, run_command

log = logging.getLogger("pose3d")

SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def build_settings(cls: type[SettingsT], file: Path | None = None, **overrides: Any) -> SettingsT:
    """``cls`` from ``overrides`` (flags), then the environment, then ``file`` (TOML/YAML), then defaults."""
    file_data = load_settings_file(file) if file is not None else {}

    def sources(
        _cls: type[BaseSettings],
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=file_data)

    layered: type[SettingsT] = type(
        cls.__name__, (cls,), {"settings_customise_sources": classmethod(sources), "__module__": cls.__module__}
    )
    return layered(**{k: v for k, v in overrides.items() if v is not None})


def no_checkpoint_configured(settings: CommonSettings) -> bool:
    """True on a fresh machine: neither the detector nor any lifter names a checkpoint file."""
    detector = settings.detector
    return (
        detector.checkpoint is None
        and detector.backbone_checkpoint is None
        and all(spec.checkpoint is None for spec in settings.models.values())
    )


def resolve_random_weights(settings: GatewaySettings, flag: bool | None) -> tuple[GatewaySettings, str]:
    """The embedded default's rule for ``allow_random_weights``, and the sentence that explains it.

    An explicit ``--[no-]allow-random-weights`` wins, then a value from the environment or the config
    file; otherwise ``serve`` allows random weights only when no checkpoint is configured at all.
    (Deployment commands never apply this rule: there the setting defaults to off.)
    """
    if flag is not None:
        how = "--allow-random-weights" if flag else "--no-allow-random-weights"
        return settings.model_copy(
            update={"allow_random_weights": flag}
        ), f"random weights {'allowed' if flag else 'refused'} ({how})"
    if "allow_random_weights" in settings.model_fields_set:
        state = "allowed" if settings.allow_random_weights else "refused"
        return settings, f"random weights {state} (POSE3D_ALLOW_RANDOM_WEIGHTS / config file)"
    if no_checkpoint_configured(settings):
        return settings.model_copy(update={"allow_random_weights": True}), (
            "no checkpoint is configured anywhere, so `pose3d serve` serves RANDOM WEIGHTS (poses are meaningless); "
            "configure checkpoints, or pass --no-allow-random-weights to refuse"
        )
    return settings, (
        "checkpoints are configured: a model whose checkpoint is missing fails to load "
        "(pass --allow-random-weights to serve it with random weights)"
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from service.gateway.grpc_server import run_gateway
    from service.weights.resolve import weight_set_overrides

    settings = build_settings(
        GatewaySettings,
        Path(args.config) if args.config else (profile_path(args.profile) if args.profile else None),
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        workers=[],
        **(weight_set_overrides(args.weights) if args.weights else {}),
    )
    if args.host is None and "host" not in settings.model_fields_set:  # embedded default: this machine only
        settings = settings.model_copy(update={"host": "127.0.0.1"})
    settings, weights_note = resolve_random_weights(settings, args.allow_random_weights)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.log(logging.WARNING if settings.allow_random_weights else logging.INFO, "%s", weights_note)
    log.info(
        "pose3d serve: listening on http://%s:%d (REST, API docs at /docs) and gRPC port %s; engine in-process on %s, "
        "frame buffer %s",
        settings.host,
        settings.port,
        settings.grpc_port or "off",
        settings.device.value,
        "redis " + redact(settings.redis_url) if settings.redis_url else "in memory",
    )
    asyncio.run(run_gateway(settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pose3d", description="3D human pose estimation service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the embedded service (gateway + in-process engine)",
        description="Run the REST gateway with the engine in this process. With no checkpoint configured "
        "anywhere it serves random weights (and says so loudly); see --allow-random-weights.",
    )
    serve.add_argument(
        "--host", default=None, help="listen address (default 127.0.0.1; any other needs API keys: security.auth)"
    )
    serve.add_argument("--port", type=int, default=None, help="REST port (default 8000)")
    serve.add_argument("--grpc-port", type=int, default=None, help="public gRPC port (default 50051; 0 = off)")
    serve.add_argument("--config", help="TOML or YAML settings file (env POSE3D_* still applies and wins)")
    serve.add_argument(
        "--profile", choices=profile_names(), help="a shipped settings file instead of --config (realtime: a CPU)"
    )
    serve.add_argument(
        "--allow-random-weights",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve models without checkpoints on random weights (default for `serve`: on only when no "
        "checkpoint is configured anywhere; otherwise off)",
    )
    serve.add_argument(
        "--weights", default=None, metavar="SET", help="a complete weights set (see `pose3d weights list`)"
    )
    serve.set_defaults(func=_cmd_serve)
    from service.client.cli import add_client_commands
    from service.weights.cli import add_weights_commands
    from service.worker.cli import add_deployment_commands

    add_deployment_commands(sub)  # worker, gateway
    add_client_commands(sub)  # estimate, stream
    add_weights_commands(sub)  # weights list | fetch | add | path
    __import__("service.bench_command").bench_command.add_bench_command(sub)  # bench (issue 13)
    from service.render.cli import add_render_command

    add_render_command(sub)  # render
    from service.security.cli import add_keys_command

    add_keys_command(sub)  # keys create|list|revoke
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.command, lambda: int(args.func(args)))


if __name__ == "__main__":
    sys.exit(main())
