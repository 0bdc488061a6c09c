"""The ``pose3d`` command: one table of subcommands.

Each command's module has ``add_arguments(parser)`` and ``run(args) -> int`` and is imported only when its command
is named, so ``pose3d --help`` loads nothing but argparse and the client commands never load PyTorch. Settings
precedence, highest first: flags, environment (``POSE3D_*``), ``--config`` file, defaults (``build_settings``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, NamedTuple


class Command(NamedTuple):
    name: str
    module: str  # defines add_arguments(parser) and run(args) -> int
    help: str
    parser_options: dict[str, Any] = {}  # noqa: RUF012 (read only) — extra argparse options of its parser


COMMANDS: tuple[Command, ...] = (
    Command("serve", "service.commands.serve", "run the embedded service (gateway + in-process engine)"),
    Command("worker", "service.commands.worker", "serve the engine over gRPC (pose3d.worker.v1) for gateways"),
    Command(
        "gateway",
        "service.commands.gateway",
        "run the REST + gRPC gateway (remote workers with --workers, else the engine in-process)",
    ),
    Command("estimate", "service.client.estimate_cli", "3D poses of an image or a clip, over REST (--url) or gRPC"),
    Command(
        "stream", "service.client.stream_cli", "stream a clip or a camera over gRPC (bidirectional), results as JSON"
    ),
    Command("render", "service.render.cli", "draw saved results: 2D overlay + 3D skeleton, PNG or MP4"),
    Command("jobs", "service.client.jobs", "list, show or cancel jobs (long clips: POST /v1/jobs)"),
    Command("keys", "service.security.cli", "manage API keys (create, list, revoke)"),
    Command("weights", "service.weights.cli", "list, download and install published checkpoints"),
    Command("eval", "service.evaluation.cli", "accuracy of the served pipeline: Human3.6M, MPI-INF-3DHP, own clips"),
    Command(
        "bench",
        "service.bench_command",
        "network benchmark suite (python -m bench): items/s, FLOPs, %% of matmul peak, fast vs reference",
        {"add_help": False, "prefix_chars": "+"},  # --quick, --help … go to python -m bench, not to pose3d
    ),
)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` (all of them when ``argv`` is None) gets its flags."""
    parser = argparse.ArgumentParser(prog="pose3d", description="3D human pose estimation service")
    sub = parser.add_subparsers(dest="command", required=True)
    named = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    for command in COMMANDS:
        child = sub.add_parser(command.name, help=command.help, description=command.help, **command.parser_options)
        child.set_defaults(module=command.module)
        if argv is None or command.name == named:
            importlib.import_module(command.module).add_arguments(child)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    from service.startup import run_command  # after parsing: `--help` stays light

    return run_command(args.command, lambda: int(importlib.import_module(args.module).run(args)))


if __name__ == "__main__":
    sys.exit(main())
