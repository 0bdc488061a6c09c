"""Flags shared by the process commands and the step from flags to Settings."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from service.config import CommonSettings, SettingsT, build_settings
from service.weights.resolve import resolved

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RANDOM_WEIGHTS_OFF_HELP = "serve models whose checkpoints are missing on random weights (default off)"


def add_common_arguments(
    parser: argparse.ArgumentParser,
    settings: type[CommonSettings],
    random_weights_help: str = RANDOM_WEIGHTS_OFF_HELP,
    *,
    ports: bool = False,
) -> None:
    """``--host`` (its help naming the default of ``settings``), ``--config``, ``--[no-]allow-random-weights``
    and, with ``ports``, a gateway's ``--port`` (REST) and ``--grpc-port`` (public gRPC)."""
    default_host = settings.model_fields["host"].default
    parser.add_argument("--host", default=None, help=f"listen address (default {default_host})")
    parser.add_argument("--config", help="TOML or YAML settings file (env POSE3D_* still applies and wins)")
    parser.add_argument(
        "--allow-random-weights", action=argparse.BooleanOptionalAction, default=None, help=random_weights_help
    )
    if ports:
        parser.add_argument("--port", type=int, default=None, help="REST port (default 8000)")
        parser.add_argument("--grpc-port", type=int, default=None, help="public gRPC port (default 50051; 0 = off)")


def settings_from_args(cls: type[SettingsT], args: argparse.Namespace, **overrides: Any) -> SettingsT:
    """``cls`` from ``--host``, ``--allow-random-weights`` and the flags in ``overrides`` (None = not given), the
    environment and ``--config``, with weights catalogue names resolved to the installed files (WeightsError names
    `pose3d weights fetch` when one is not)."""
    flags = {"host": args.host, "allow_random_weights": args.allow_random_weights, **overrides}
    return resolved(build_settings(cls, Path(args.config) if args.config else None, **flags))


def configure_logging(settings: CommonSettings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
