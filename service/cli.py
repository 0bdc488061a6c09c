"""The ``pose3d`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from service.config import GatewaySettings, load_settings_file

log = logging.getLogger("pose3d")


def _settings_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if getattr(args, "config", None):
        kwargs.update(load_settings_file(Path(args.config)))
    for name in ("host", "port"):
        value = getattr(args, name, None)
        if value is not None:
            kwargs[name] = value
    return kwargs


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.gateway.app import create_app

    settings = GatewaySettings(**_settings_kwargs(args))
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("pose3d serve listening on http://%s:%d (engine in-process)", settings.host, settings.port)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pose3d", description="3D human pose estimation service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the embedded service (gateway + in-process engine)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--config", help="TOML or YAML settings file (env POSE3D_* still applies)")
    serve.set_defaults(func=_cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
