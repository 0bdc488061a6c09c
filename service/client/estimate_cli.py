"""``pose3d estimate``: 3D poses of one image or clip over REST (``--url``) or gRPC (``--grpc``), written to ``-o`` by
its suffix; a clip sent over REST for JSON lines runs as a job (:mod:`service.client.jobs`).

Imports no torch and no model code (import-linter contract; tests/service/test_light_client.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from service.client.connection import add_connection_arguments, connection_from_args
from service.client.estimate import EstimateArgs, estimate_grpc, estimate_rest
from service.client.jobs import CLIP_SUFFIXES, JobError, JobsClient, run_job
from service.errors import Pose3DError
from service.export.bvh import export_bvh
from service.export.formats import ExportFormat, export_document
from service.export.tracks import frames_of, track_ids, track_sequence


def boxes_arg(text: str) -> list[list[float]]:
    """``--boxes``: a JSON list of ``[x1, y1, x2, y2]`` person boxes (pixels); any other text is argparse's error
    (exit 2) naming the flag. Their values are the gateway's to check, as for any client."""
    try:
        boxes = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None

    def is_box(box: object) -> bool:
        return isinstance(box, list) and len(box) == 4 and all(type(v) in (int, float) for v in box)

    if not isinstance(boxes, list) or not all(is_box(box) for box in boxes):
        raise argparse.ArgumentTypeError(f"not a JSON list of [x1, y1, x2, y2] boxes: {text!r}")
    return [[float(v) for v in box] for box in boxes]


def count_arg(text: str) -> int:
    """A count flag (people, every n-th frame, frames, pixels, fps): a whole number from 1 to 2^32 - 1 (what the
    gRPC fields hold); any other text is argparse's error (exit 2) naming the flag."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {2**32 - 1}")
    return value


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="served model name (default: the server's for the input)")
    parser.add_argument("--boxes", type=boxes_arg, default=None, help="JSON [[x1, y1, x2, y2], ...] boxes (pixels)")
    parser.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--max-people", type=count_arg, default=None)
    parser.add_argument("--mode", choices=["centred", "causal"], default=None, help="temporal window mode")


def estimate_args(args: argparse.Namespace) -> EstimateArgs:
    return EstimateArgs(
        model=args.model,
        boxes=args.boxes,
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
    parser.add_argument("--every-nth", type=count_arg, default=None, help="clips: process every n-th frame")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds")
    parser.add_argument(
        "--output",
        "-o",
        default=None,
        help="write the result here instead of stdout: .json, .jsonl, .csv or .bvh (by suffix)",
    )
    parser.add_argument("--compact", action="store_true", help="one-line JSON")
    add_options(parser)
    parser.add_argument("--no-job", action="store_true", help="clips: one POST /v1/pose3d instead of a job")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_connection_arguments(parser)


def write_output(document: Mapping[str, Any], path: Path, compact: bool = False) -> list[str]:
    """Write ``document`` as the format ``path``'s suffix names; the lines to tell the user.

    BVH writes one file per track: ``path`` itself for a single track, else ``<stem>_track<id>.bvh`` beside it.
    An unknown suffix is written as JSON."""
    try:
        fmt = ExportFormat.from_suffix(path.suffix)
    except ValueError:
        fmt = ExportFormat.JSON
    if fmt is ExportFormat.JSON:
        path.write_text(json.dumps(document, indent=None if compact else 2) + "\n")
        return [f"wrote {path}"]
    if fmt is not ExportFormat.BVH:
        path.write_bytes(export_document(document, fmt).content)
        return [f"wrote {path}"]
    frames = frames_of(document)
    ids = track_ids(frames)
    if not ids:
        raise ValueError("no person was found in any frame: nothing to write as BVH")
    notes = []
    for tid in ids:
        target = path if len(ids) == 1 else path.with_name(f"{path.stem}_track{tid}.bvh")
        exported = export_bvh(track_sequence(frames, tid))
        target.write_text(exported.text)
        notes.append(
            f"wrote {target}: track {tid}, {exported.frames} frames, "
            f"max reconstruction error {exported.max_error_m * 1000:.3f} mm (bone-length residual)"
        )
    return notes


def wants_job(args: argparse.Namespace) -> bool:
    """``pose3d estimate`` runs a clip sent over REST as a job (unless ``--no-job``) when its output is JSON lines
    (``-o x.jsonl`` / ``x.ndjson``, or no ``-o``: ``<clip>.jsonl``); other formats (csv, bvh, json) take one POST."""
    if args.grpc or args.no_job or Path(args.file).suffix.lower() not in CLIP_SUFFIXES:
        return False
    return args.output is None or Path(args.output).suffix.lower() in (".jsonl", ".ndjson")


def estimate_as_job(args: argparse.Namespace, options: EstimateArgs) -> int:
    media = Path(args.file)
    output = Path(args.output) if args.output else media.with_suffix(".jsonl")
    client = JobsClient(args.url, connection=connection_from_args(args))
    try:
        outcome = run_job(client, media, options, output, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("pose3d estimate: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (JobError, Pose3DError, OSError) as exc:
        print(f"pose3d estimate: {exc}", file=sys.stderr)
        return 1
    print(f"{outcome.frames} frames written to {outcome.output}", file=sys.stderr)
    return 0


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
