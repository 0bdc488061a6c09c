"""The REST clients (``pose3d estimate``, ``pose3d jobs``, the Python API) when the connection fails or the gateway
refuses: one line and exit 1 from the CLI, the error tree's ``Unavailable`` from the API (as over gRPC), never a bare
httpx traceback; a job whose stream drops keeps its state file (the next run resumes), a refused status check never
starts a second job, a removed output is written again, and a refusal keeps its Retry-After. The gateway here is a
scripted HTTP server: a drop mid-answer and a refusal on demand."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from service.client import AsyncPose3DClient, Pose3DClient
from service.errors import Overloaded, Unavailable

JOB = "J" * 24


@dataclass(frozen=True)
class Answer:
    """``status`` with a JSON ``body``; or, with ``lines``, an NDJSON stream (chunked) of them that ends cleanly or,
    with ``drop``, loses its connection before its last chunk."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    lines: list[dict[str, Any]] | None = None
    drop: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Script:
    url: str
    answers: dict[tuple[str, str], Answer]
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, path with its query)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            script.seen.append((self.command, self.path))
            answer = script.answers[(self.command, self.path.split("?")[0])]
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if answer.lines is None:
                body = json.dumps(answer.body).encode()
                kind = "application/json" if answer.status < 400 else "application/problem+json"
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_header("content-type", "application/x-ndjson")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for line in answer.lines:
                data = json.dumps(line).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            if not answer.drop:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def script() -> Iterator[Script]:
    found = Script("", {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(found))
    found.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_url() -> str:
    """A port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "c.mp4"
    path.write_bytes(b"not decoded by the scripted gateway")
    return path


def frames(*indices: int) -> list[dict[str, Any]]:
    return [{"frame_index": i, "timestamp_s": None, "people": []} for i in indices]


def test_an_unreachable_gateway_is_one_line_and_exit_1(
    closed_url: str, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "x.jpg"
    image.write_bytes(b"\xff\xd8\xff" + b"\0" * 32)
    assert main(["estimate", str(image), "--url", closed_url]) == 1
    assert main(["estimate", str(clip), "--url", closed_url, "--no-progress"]) == 1  # a clip: as a job
    assert main(["jobs", "list", "--url", closed_url]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err] == ["pose3d estimate", "pose3d estimate", "pose3d jobs"]
    assert all(closed_url in line for line in err)


def test_the_python_client_raises_unavailable_over_rest_as_over_grpc(closed_url: str) -> None:
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1"):
        Pose3DClient(closed_url).estimate(b"\xff\xd8\xff")


def test_a_results_stream_that_drops_keeps_the_job_to_resume(
    script: Script, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.jsonl"
    script.answers = {
        ("POST", "/v1/jobs"): Answer(202, {"job_id": JOB}),
        ("GET", f"/v1/jobs/{JOB}"): Answer(200, {"job_id": JOB, "state": "running", "frames_total": 4}),
        ("GET", f"/v1/jobs/{JOB}/results"): Answer(lines=frames(0, 1), drop=True),
    }
    assert main(["estimate", str(clip), "--url", script.url, "-o", str(out), "--no-progress"]) == 1
    assert "pose3d estimate: " in capsys.readouterr().err
    assert [json.loads(line)["frame_index"] for line in out.read_text().splitlines()] == [0, 1]
    assert json.loads((tmp_path / "c.jsonl.job").read_text())["job_id"] == JOB
    script.answers[("GET", f"/v1/jobs/{JOB}/results")] = Answer(lines=frames(2, 3))
    assert main(["estimate", str(clip), "--url", script.url, "-o", str(out), "--no-progress"]) == 0
    assert [json.loads(line)["frame_index"] for line in out.read_text().splitlines()] == [0, 1, 2, 3]
    assert script.seen.count(("POST", "/v1/jobs")) == 1  # resumed, not submitted again
    assert ("GET", f"/v1/jobs/{JOB}/results?after=1") in script.seen


def test_a_refused_status_check_never_starts_a_second_job(
    script: Script, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.jsonl"
    out.write_text("".join(json.dumps(f) + "\n" for f in frames(0, 1)))
    state = {"job_id": JOB, "media": str(clip.resolve()), "size": clip.stat().st_size, "url": script.url}
    (tmp_path / "c.jsonl.job").write_text(json.dumps(state) + "\n")
    problem = {"type": "urn:pose3d:problem:quota-exceeded", "title": "Quota exceeded", "status": 429,
               "detail": "this key's rate is spent"}  # fmt: skip
    script.answers = {
        ("GET", f"/v1/jobs/{JOB}"): Answer(429, problem, headers={"Retry-After": "7"}),
        ("POST", "/v1/jobs"): Answer(202, {"job_id": "K" * 24}),
    }
    assert main(["estimate", str(clip), "--url", script.url, "-o", str(out), "--no-progress"]) == 1
    assert "429 Quota exceeded: this key's rate is spent" in capsys.readouterr().err
    assert ("POST", "/v1/jobs") not in script.seen  # the job may well go on: no second one
    assert not (tmp_path / "c.1.jsonl").exists()
    assert json.loads((tmp_path / "c.jsonl.job").read_text())["job_id"] == JOB  # the next run resumes it


def test_a_missing_output_of_a_resumed_job_is_written_again_from_the_first_frame(
    script: Script, clip: Path, tmp_path: Path
) -> None:
    out = tmp_path / "c.jsonl"  # the user removed it; its state file is still there
    state = {"job_id": JOB, "media": str(clip.resolve()), "size": clip.stat().st_size, "url": script.url}
    (tmp_path / "c.jsonl.job").write_text(json.dumps(state) + "\n")
    script.answers = {
        ("GET", f"/v1/jobs/{JOB}"): Answer(200, {"job_id": JOB, "state": "done", "frames_total": 3}),
        ("GET", f"/v1/jobs/{JOB}/results"): Answer(lines=frames(0, 1, 2)),
    }
    assert main(["estimate", str(clip), "--url", script.url, "-o", str(out), "--no-progress"]) == 0
    assert [json.loads(line)["frame_index"] for line in out.read_text().splitlines()] == [0, 1, 2]
    assert ("GET", f"/v1/jobs/{JOB}/results") in script.seen  # from the first frame
    assert not (tmp_path / "c.jsonl.job").exists()


async def test_a_refusal_over_rest_carries_its_retry_after_as_over_grpc(script: Script) -> None:
    problem = {"type": "urn:pose3d:problem:over-capacity", "title": "Over capacity", "status": 503,
               "detail": "the queue would not reach this work in time"}  # fmt: skip
    script.answers = {("POST", "/v1/pose3d"): Answer(503, problem, headers={"Retry-After": "7"})}
    with pytest.raises(Overloaded) as refused:
        await AsyncPose3DClient(script.url).estimate(b"\xff\xd8\xff")
    assert refused.value.retry_after_s == 7.0


def test_an_output_that_cannot_be_written_submits_no_job(
    script: Script, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, the job was submitted first and its state file written after: the command failed, the job ran for
    no one, and every rerun submitted one more."""
    script.answers = {("POST", "/v1/jobs"): Answer(202, {"job_id": JOB})}
    out = tmp_path / "missing" / "c.jsonl"
    assert main(["estimate", str(clip), "--url", script.url, "-o", str(out), "--no-progress"]) == 1
    assert "No such file or directory" in capsys.readouterr().err
    assert script.seen == []
