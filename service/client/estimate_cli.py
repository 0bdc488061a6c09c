"""``pose3d estimate``: 3D poses of one image or clip over REST (``--url``) or gRPC (``--grpc``).

Imports no torch and no model code (import-linter contract; tests/service/test_light_client.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from service.client.connection import add_connection_arguments, connection_from_args
from service.client.estimate import EstimateArgs, estimate_grpc, estimate_rest
from service.client.jobs_cli import add_job_options, estimate_as_job, wants_job
from service.client.outputs import write_output
from service.errors import Pose3DError


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="served model name (default: the server's for the input)")
    parser.add_argument("--boxes", default=None, help="JSON [[x1, y1, x2, y2], ...] person boxes (pixels)")
    parser.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--max-people", type=int, default=None)
    parser.add_argument("--mode", choices=["centred", "causal"], default=None, help="temporal window mode")


def estimate_args(args: argparse.Namespace) -> EstimateArgs:
    boxes = json.loads(args.boxes) if args.boxes else None
    return EstimateArgs(
        model=args.model,
        boxes=boxes,
        flip_test=args.flip_test,
        max_people=args.max_people,
        mode=args.mode,
        every_nth=getattr(args, "every_nth", None),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``estimate`` flags."""
    parser.description = "Send one image or clip; prints the JSON result (the REST document, also for --grpc)."
    parser.add_argument("file", help="JPEG/PNG/WebP image or MP4/MOV/WebM/AVI clip")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="REST base URL")
    parser.add_argument("--grpc", default=None, help="use gRPC at host:port instead of REST")
    parser.add_argument("--every-nth", type=int, default=None, help="clips: process every n-th frame")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds")
    parser.add_argument(
        "--output",
        "-o",
        default=None,
        help="write the result here instead of stdout: .json, .jsonl, .csv or .bvh (by suffix)",
    )
    parser.add_argument("--compact", action="store_true", help="one-line JSON")
    add_options(parser)
    add_job_options(parser)
    add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    media = Path(args.file)
    options = estimate_args(args)
    if wants_job(args):
        return estimate_as_job(args, options)
    connection = connection_from_args(args)
    try:
        if args.grpc:
            document = asyncio.run(estimate_grpc(args.grpc, media.read_bytes(), options, args.timeout, connection))
        else:
            document = estimate_rest(args.url, media, options, args.timeout, connection)
    except (Pose3DError, RuntimeError) as exc:
        print(f"pose3d estimate: {exc}", file=sys.stderr)
        return 1
    if args.output:
        try:
            notes = write_output(document, Path(args.output), args.compact)
        except ValueError as exc:
            print(f"pose3d estimate: {exc}", file=sys.stderr)
            return 1
        print("\n".join(notes), file=sys.stderr)
    else:
        print(json.dumps(document, indent=None if args.compact else 2))
    return 0
