"""The job client (``pose3d estimate`` of a clip, ``pose3d jobs``) against a live embedded gateway."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from service.client.estimate import EstimateArgs
from service.client.jobs import JobError, JobsClient, run_job
from service.jobs.memory import MemoryJobStore
from tests.conftest import REPO
from tests.service.media_samples import encode_clip
from tests.service.rest_support import LiveServer, live_server, tiny_settings

FRAMES = 12


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    with live_server(tiny_settings()) as server:
        yield server


class Interrupted(JobsClient):
    """Reads ``stop_after`` frames, then the user presses Ctrl-C."""

    stop_after = 5

    def results(self, job_id: str, after: int | None) -> Iterator[dict[str, Any]]:
        for n, frame in enumerate(super().results(job_id, after)):
            if n == self.stop_after:
                raise KeyboardInterrupt
            yield frame


def test_estimate_job_survives_ctrl_c_and_resumes_the_same_job(live: LiveServer, tmp_path: Path) -> None:
    clip = tmp_path / "long.mp4"
    clip.write_bytes(encode_clip(frames=FRAMES, width=64, height=96))
    out = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_job(Interrupted(live.url), clip, EstimateArgs(), out, progress=False)
    state = json.loads((tmp_path / "out.jsonl.job").read_text())
    assert len(out.read_text().splitlines()) == Interrupted.stop_after
    jobs_before = len(JobsClient(live.url).list())
    outcome = run_job(JobsClient(live.url), clip, EstimateArgs(), out, progress=False)
    assert (outcome.frames, outcome.output, outcome.note) == (FRAMES, out, None)
    assert len(JobsClient(live.url).list()) == jobs_before  # resumed, not submitted again
    frames = [json.loads(line) for line in out.read_text().splitlines()]
    assert [f["frame_index"] for f in frames] == list(range(FRAMES))
    assert not (tmp_path / "out.jsonl.job").exists()
    assert JobsClient(live.url).status(state["job_id"])["state"] == "done"


class CancelledMidway(JobsClient):
    """Reads ``stop_after`` frames, then the user runs `pose3d jobs cancel` and the stream ends with its error."""

    stop_after = 4

    def results(self, job_id: str, after: int | None) -> Iterator[dict[str, Any]]:
        for n, frame in enumerate(super().results(job_id, after)):
            if n == self.stop_after:
                self.cancel(job_id)
                raise JobError(f"job {job_id}: cancelled")
            yield frame


def test_cancel_then_rerun_keeps_every_line_already_written(
    live: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = tmp_path / "long.mp4"
    clip.write_bytes(encode_clip(frames=FRAMES, width=64, height=96))
    out = tmp_path / "out.jsonl"
    with pytest.raises(JobError):
        run_job(CancelledMidway(live.url), clip, EstimateArgs(), out, progress=False)
    before = out.read_text()
    assert len(before.splitlines()) == CancelledMidway.stop_after
    state = json.loads((tmp_path / "out.jsonl.job").read_text())
    cancelled = JobsClient(live.url).status(state["job_id"])["state"] == "cancelled"  # else it finished first
    outcome = run_job(JobsClient(live.url), clip, EstimateArgs(), out, progress=False)
    assert out.read_text().startswith(before)  # every line already written is still there
    if cancelled:  # nothing left to resume: a new job, written beside the old file, and said so
        assert outcome.output == tmp_path / "out.1.jsonl"
        assert outcome.note is not None
        assert f"{out} already holds 4 lines (kept)" in outcome.note
        assert "out.1.jsonl" in capsys.readouterr().err
    else:  # the server finished the job before the cancel: the rerun resumes it after line 4
        assert (outcome.output, outcome.note) == (out, None)
    frames = [json.loads(line) for line in outcome.output.read_text().splitlines()]
    assert [f["frame_index"] for f in frames] == list(range(FRAMES))


def test_rerun_never_truncates_results_it_cannot_resume(live: LiveServer, tmp_path: Path) -> None:
    clip = tmp_path / "c.mp4"
    clip.write_bytes(encode_clip(frames=6, width=64, height=96))
    out = tmp_path / "out.jsonl"
    out.write_text('{"frame_index": 0}\n{"frame_index": 1}\n')  # a job the server no longer knows
    (tmp_path / "out.jsonl.job").write_text(json.dumps({"job_id": "A" * 24, "media": str(clip.resolve()),
                                                         "size": clip.stat().st_size}))  # fmt: skip
    first = run_job(JobsClient(live.url), clip, EstimateArgs(), out, progress=False)
    assert out.read_text() == '{"frame_index": 0}\n{"frame_index": 1}\n'
    assert first.output == tmp_path / "out.1.jsonl"
    assert first.note == f"{out} already holds 2 lines (kept); this job's frames go to {first.output}"
    assert len(first.output.read_text().splitlines()) == 6
    second = run_job(JobsClient(live.url), clip, EstimateArgs(), out, progress=False)  # a finished file stays too
    assert second.output == tmp_path / "out.2.jsonl"
    assert len(first.output.read_text().splitlines()) == 6
    assert not (tmp_path / "out.jsonl.job").exists()


def test_job_client_is_torch_free() -> None:
    code = (  # model.joints (numpy-only joint tables) is the one piece of model/ the client may load (import contract)
        "import sys, service.client.jobs; "
        "sys.exit(('torch' in sys.modules) + 2 * bool({m for m in sys.modules if m.startswith('model.')} - {'model.joints'}))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False).returncode == 0


def test_pose3d_estimate_and_jobs_commands(
    live: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = tmp_path / "c.mp4"
    clip.write_bytes(encode_clip(frames=6, width=64, height=96))
    out = tmp_path / "c.jsonl"
    assert main(["estimate", str(clip), "--url", live.url, "-o", str(out), "--no-progress"]) == 0
    assert len(out.read_text().splitlines()) == 6
    assert main(["jobs", "list", "--url", live.url]) == 0
    listing = capsys.readouterr().out
    job_id = listing.splitlines()[1].split()[0]
    assert "done" in listing.splitlines()[1]
    assert main(["jobs", "show", job_id, "--url", live.url]) == 0
    assert json.loads(capsys.readouterr().out)["frames_done"] == 6
    assert main(["jobs", "cancel", job_id, "--url", live.url]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "done"  # a finished job stays finished
    assert main(["jobs", "show", "A" * 24, "--url", live.url]) == 1
    assert "404" in capsys.readouterr().err


def test_a_job_whose_stored_frames_were_lost_is_not_resumed_for_ever(live: LiveServer, tmp_path: Path) -> None:
    """Interrupted, then the job store (Redis eviction) lost frames the job had finished: the rerun that resumes it
    is answered 410 job-results-lost; the run after that submits the clip again and writes beside, instead of
    resuming the same lost job (and failing) on every run."""
    clip = tmp_path / "long.mp4"
    clip.write_bytes(encode_clip(frames=FRAMES, width=64, height=96))
    out = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_job(Interrupted(live.url), clip, EstimateArgs(), out, progress=False)
    job_id = json.loads((tmp_path / "out.jsonl.job").read_text())["job_id"]
    assert len(list(JobsClient(live.url).results(job_id, None))) == FRAMES  # the job has finished
    store = live.app.state.jobs.store
    assert isinstance(store, MemoryJobStore)
    del store._entry(job_id).frames[FRAMES - 2]  # as Redis's eviction would
    with pytest.raises(JobError, match="gone from the job store"):
        run_job(JobsClient(live.url), clip, EstimateArgs(), out, progress=False)
    kept = out.read_text()
    assert len(kept.splitlines()) == FRAMES - 2  # the frames before the lost one
    outcome = run_job(JobsClient(live.url), clip, EstimateArgs(), out, progress=False)
    assert outcome.output == tmp_path / "out.1.jsonl"
    assert [json.loads(line)["frame_index"] for line in outcome.output.read_text().splitlines()] == list(range(FRAMES))
    assert out.read_text() == kept
