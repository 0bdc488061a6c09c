"""``pose3d jobs list|show|cancel`` and the job path of ``pose3d estimate`` for clips."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service.client.connection import add_connection_arguments, connection_from_args
from service.client.jobs import CLIP_SUFFIXES, JobError, JobsClient, print_jobs, run_job

if TYPE_CHECKING:
    from service.client.estimate import EstimateArgs


def wants_job(args: argparse.Namespace) -> bool:
    """``pose3d estimate`` runs a clip sent over REST as a job (unless ``--no-job``) when its output is JSON lines
    (``-o x.jsonl`` / ``x.ndjson``, or no ``-o``: ``<clip>.jsonl``); other formats (csv, bvh, json) take one POST."""
    if args.grpc or getattr(args, "no_job", False) or Path(args.file).suffix.lower() not in CLIP_SUFFIXES:
        return False
    return args.output is None or Path(args.output).suffix.lower() in (".jsonl", ".ndjson")


def estimate_as_job(args: argparse.Namespace, options: EstimateArgs) -> int:
    media = Path(args.file)
    output = Path(args.output) if args.output else media.with_suffix(".jsonl")
    client = JobsClient(args.url, connection=connection_from_args(args))
    progress = not getattr(args, "no_progress", False)
    try:
        outcome = run_job(client, media, options, output, progress=progress)
    except KeyboardInterrupt:
        print("pose3d estimate: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (JobError, OSError) as exc:
        print(f"pose3d estimate: {exc}", file=sys.stderr)
        return 1
    print(f"{outcome.frames} frames written to {outcome.output}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """``pose3d jobs list|show|cancel``."""
    client = JobsClient(args.url, connection=connection_from_args(args))
    try:
        if args.action == "list":
            print_jobs(client.list(), sys.stdout)
            return 0
        if not args.job_id:
            raise JobError(f"pose3d jobs {args.action} needs a JOB_ID")
        status = client.status(args.job_id) if args.action == "show" else client.cancel(args.job_id)
    except JobError as exc:
        print(f"pose3d jobs: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``pose3d jobs`` flags (a command-table module: ``add_arguments`` / ``run``)."""
    parser.add_argument("action", choices=["list", "show", "cancel"])
    parser.add_argument("job_id", nargs="?", default=None)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="REST base URL")
    add_connection_arguments(parser)


def add_job_options(estimate: argparse.ArgumentParser) -> None:
    """``pose3d estimate`` flags for clips run as jobs."""
    estimate.add_argument("--no-job", action="store_true", help="clips: one POST /v1/pose3d instead of a job")
    estimate.add_argument("--no-progress", action="store_true", help="no progress bar")
