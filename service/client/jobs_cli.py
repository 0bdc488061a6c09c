"""``pose3d jobs list|show|cancel``: the jobs of ``/v1/jobs`` (:class:`~service.client.jobs.JobsClient`)."""

from __future__ import annotations

import argparse
import json
import sys

from service.client.connection import add_connection_arguments, connection_from_args
from service.client.jobs import JobError, JobsClient, print_jobs


def run(args: argparse.Namespace) -> int:
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
