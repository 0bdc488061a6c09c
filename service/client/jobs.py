"""Long clips as jobs from the command line (docs/jobs.md): ``POST /v1/jobs``, the job id kept in ``<output>.job``,
each frame's result appended to the output as it completes (``GET /v1/jobs/{id}/results``, NDJSON); run again after
an interruption, the same command resumes the job after the output's last frame. Also ``pose3d jobs list|show|cancel``
(a command-table module: :func:`add_arguments` / :func:`run`). Torch-free: only httpx and tqdm."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from tqdm import tqdm

from service.client.connection import Connection, add_connection_arguments, connection_from_args
from service.client.estimate import EstimateArgs, http_failures, rest_form, rest_json
from service.errors import Pose3DError

NDJSON = "application/x-ndjson"
CLIP_SUFFIXES = frozenset({".mp4", ".mov", ".webm", ".avi", ".m4v", ".mkv"})


class JobError(RuntimeError):
    """The server refused the job, or the job failed or was cancelled."""


class JobResultsGone(JobError):
    """The server no longer holds frames of the job's results (410 job-results-lost): the job cannot be resumed."""


@dataclass
class JobsClient:
    """``/v1/jobs`` at ``base_url``."""

    base_url: str
    timeout_s: float = 60.0
    connection: Connection = field(default_factory=Connection)

    def _client(self, timeout: httpx.Timeout | float | None = None) -> httpx.Client:
        timeout = self.timeout_s if timeout is None else timeout
        return httpx.Client(base_url=self.base_url.rstrip("/"), timeout=timeout, **self.connection.http_options())

    def submit(self, media: Path, args: EstimateArgs) -> dict[str, Any]:
        with http_failures(self.base_url), self._client() as client, media.open("rb") as fh:
            response = client.post("/v1/jobs", files={"file": (media.name, fh)}, data=rest_form(args))
        return rest_json(response, 202, JobError)

    def _call(self, method: str, path: str) -> dict[str, Any]:
        with http_failures(self.base_url), self._client() as client:
            return rest_json(client.request(method, path), error=JobError)

    def status(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def find(self, job_id: str) -> dict[str, Any] | None:
        """The job's status; None when the server does not know it (404: expired, or never this key's). Any other
        answer that is not a status (a refusal: 429/503) raises JobError as :meth:`status` does."""
        with http_failures(self.base_url), self._client() as client:
            response = client.get(f"/v1/jobs/{job_id}")
        return None if response.status_code == 404 else rest_json(response, error=JobError)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/jobs/{job_id}")

    def list(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/jobs")["jobs"])

    def results(self, job_id: str, after: int | None) -> Iterator[dict[str, Any]]:
        """Frames as they complete (past ``after``); JobError when the job failed or was cancelled, Unavailable when
        the connection drops (:func:`~service.client.estimate.http_failures`; the job goes on: resume after the last
        frame read)."""
        params = {} if after is None else {"after": str(after)}
        with (
            http_failures(self.base_url),
            self._client(httpx.Timeout(self.timeout_s, read=None)) as client,
            client.stream("GET", f"/v1/jobs/{job_id}/results", params=params, headers={"Accept": NDJSON}) as resp,
        ):
            if resp.status_code != 200:
                resp.read()
                rest_json(resp, error=JobError)  # raises: the problem document of this status
            for line in resp.iter_lines():
                if not line:
                    continue
                item: dict[str, Any] = json.loads(line)
                if "error" in item:
                    gone = item["error"].get("status") == 410
                    raise (JobResultsGone if gone else JobError)(f"job {job_id}: {item['error'].get('detail')}")
                yield item


def _last_frame_index(output: Path) -> int | None:
    """The ``frame_index`` of the last complete line of ``output`` (a torn last line is cut off)."""
    if not output.exists():
        return None
    data = output.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        output.write_bytes(data)
    lines = data.splitlines()
    return int(json.loads(lines[-1])["frame_index"]) if lines else None


def _resumable(client: JobsClient, state_file: Path, media: Path) -> str | None:
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text())
    if state.get("media") != str(media.resolve()) or state.get("size") != media.stat().st_size:
        return None
    status = client.find(str(state["job_id"]))  # a refusal raises: the job may well go on, never start a second one
    return None if status is None or status["state"] in ("failed", "cancelled") else str(state["job_id"])


def next_free(output: Path) -> Path:
    """``output`` if it is missing or empty, else the first missing ``<stem>.<n><suffix>`` beside it."""
    if not output.exists() or output.stat().st_size == 0:
        return output
    n = 1
    while (candidate := output.with_name(f"{output.stem}.{n}{output.suffix}")).exists():
        n += 1
    return candidate


@dataclass(frozen=True)
class JobOutcome:
    """What :func:`run_job` wrote: ``frames`` lines in ``output``; ``note`` says why ``output`` is not the path
    asked for (results already there were kept), else ``None``."""

    frames: int
    output: Path
    note: str | None = None


def run_job(client: JobsClient, media: Path, args: EstimateArgs, output: Path, progress: bool = True) -> JobOutcome:
    """Submit ``media`` as a job (or resume the one ``output``'s state file names) and append its frames to
    ``output`` as JSON lines. Results never get lost: when ``output`` already holds lines that this job cannot
    continue (a cancelled or failed job, another run), the new job writes beside it (``out.1.jsonl``) and the
    outcome's note says so. The state file goes once the job is done."""
    state_file = output.with_name(output.name + ".job")
    job_id = _resumable(client, state_file, media)
    after: int | None = None
    note = None
    if job_id is None:
        target = next_free(output)
        if target != output:
            kept = sum(1 for _ in output.open("rb"))
            note = f"{output} already holds {kept} lines (kept); this job's frames go to {target}"
            state_file.unlink(missing_ok=True)
            output, state_file = target, target.with_name(target.name + ".job")
        output.write_bytes(b"")  # before the job: an output that cannot be written submits none
        job_id = str(client.submit(media, args)["job_id"])
        state_file.write_text(json.dumps({"job_id": job_id, "media": str(media.resolve()),
                                          "size": media.stat().st_size, "url": client.base_url}) + "\n")  # fmt: skip
        if note is not None:
            print(f"pose3d estimate: {note}", file=sys.stderr)
    else:
        after = _last_frame_index(output)
        output.touch()  # the user may have removed it: the job's frames are read again from the first
    written = sum(1 for _ in output.open("rb"))
    total = client.status(job_id).get("frames_total")
    bar = tqdm(total=total, initial=written, unit="frame", desc=job_id[-8:], disable=not progress, file=sys.stderr)
    with output.open("a") as out, bar:
        try:
            for frame in client.results(job_id, after):
                out.write(json.dumps(frame) + "\n")
                out.flush()
                written += 1
                bar.update(1)
        except JobResultsGone as gone:
            state_file.unlink(missing_ok=True)  # not resumable: the next run submits the clip again, beside `output`
            raise JobResultsGone(f"{gone} (the next run submits the clip again)") from gone
    state_file.unlink(missing_ok=True)
    return JobOutcome(written, output, note)


def print_jobs(jobs: list[dict[str, Any]], out: TextIO) -> None:
    out.write(f"{'JOB':31} {'STATE':10} {'KIND':9} {'MODEL':12} {'FRAMES':>13} {'FPS':>7} {'AGE':>8}\n")
    now = time.time()
    for job in jobs:
        total = "?" if job["frames_total"] is None else job["frames_total"]
        fps = "" if job["frames_per_second"] is None else f"{job['frames_per_second']:.1f}"
        age = f"{now - job['created_s']:.0f}s"
        frames = f"{job['frames_done']}/{total}"
        out.write(
            f"{job['job_id']:31} {job['state']:10} {job['kind']:9} {job['model']:12} {frames:>13} {fps:>7} {age:>8}\n"
        )


def run(args: argparse.Namespace) -> int:
    client = JobsClient(args.url, connection=connection_from_args(args))
    try:
        if args.action == "list":
            print_jobs(client.list(), sys.stdout)
            return 0
        if not args.job_id:
            raise JobError(f"pose3d jobs {args.action} needs a JOB_ID")
        status = client.status(args.job_id) if args.action == "show" else client.cancel(args.job_id)
    except (JobError, Pose3DError) as exc:
        print(f"pose3d jobs: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``pose3d jobs`` flags."""
    parser.add_argument("action", choices=["list", "show", "cancel"])
    parser.add_argument("job_id", nargs="?", default=None)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="REST base URL")
    add_connection_arguments(parser)
