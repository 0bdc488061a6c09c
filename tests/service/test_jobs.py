"""Jobs over REST on a live embedded gateway (tiny random models): a 60-s clip as a job, NDJSON, cancel, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from service.config import JobSettings, LimitSettings
from service.jobs.memory import MemoryJobStore
from service.jobs.store import job_tag, key_tag, new_job_id
from tests.service.jobs_support import NDJSON, assert_same_frames, read_ndjson, submit_clip, wait_state
from tests.service.media_samples import encode_clip, encode_image, person_image
from tests.service.rest_support import LiveServer, assert_problem, live_server, tiny_settings

CLIP_SECONDS, FPS = 60, 1


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    limits = LimitSettings(max_body_bytes=16 * 1024 * 1024, max_clip_frames=20_000, max_clip_seconds=120.0)
    settings = tiny_settings(
        limits=limits, jobs=JobSettings(chunk_frames=4, keypoint_chunk_frames=64, poll_interval_s=0.05)
    )
    with live_server(settings) as server:
        yield server


@pytest.fixture(scope="module")
def long_clip() -> bytes:
    return encode_clip(frames=CLIP_SECONDS * FPS, width=64, height=96, fps=FPS)


def test_clip_job_progress_and_ndjson_resume_equal_the_clip_posted_whole(live: LiveServer, long_clip: bytes) -> None:
    total = CLIP_SECONDS * FPS
    with live.client(timeout_s=300) as client:
        submitted = submit_clip(client, long_clip)
        assert submitted["state"] == "queued"
        assert submitted["frames_done"] == 0
        assert submitted["frames_total"] == total
        job_id = submitted["job_id"]
        assert job_tag(job_id) == key_tag("")  # the anonymous caller's slot tag (auth is off)
        first = read_ndjson(client, job_id, limit=10)  # read while it runs, then stop reading
        assert [f["frame_index"] for f in first] == list(range(10))
        seen = wait_state(client, job_id, {"done", "failed", "cancelled"})
        rest = read_ndjson(client, job_id, after=first[-1]["frame_index"])
        whole = client.post("/v1/pose3d", files={"file": ("clip.mp4", long_clip, "video/mp4")})
        assert whole.status_code == 200, whole.text
        document = client.get(f"/v1/jobs/{job_id}/results")
    assert seen[-1]["state"] == "done", seen[-1]
    progress = [s["frames_done"] for s in seen]
    assert progress == sorted(progress)
    assert progress[-1] == total
    assert any(0 < p < total for p in progress), progress  # progress rose while it ran
    running = [s for s in seen if s["state"] == "running" and s["frames_done"] > 0]
    assert all(s["frames_per_second"] > 0 and s["eta_s"] is not None for s in running)
    frames = first + rest
    assert_same_frames(frames, whole.json()["frames"])
    assert document.status_code == 200
    doc = document.json()
    assert doc["frames"] == frames
    assert doc["model"] == whole.json()["model"]
    assert doc["joint_names"] == whole.json()["joint_names"]
    assert doc["box_source"] == whole.json()["box_source"]


def test_keypoint_jobs_run_in_chunks_and_list(live: LiveServer) -> None:
    pose = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]
    body: dict[str, Any] = {"keypoints_2d": [pose] * 400, "image_size": [640, 480], "model": "pstmo-9"}
    with live.client(timeout_s=300) as client:
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        assert response.json()["frames_total"] == 400
        seen = wait_state(client, job_id, {"done", "failed"})
        assert seen[-1]["state"] == "done", seen[-1]
        tail = read_ndjson(client, job_id, after=389)
        listed = client.get("/v1/jobs").json()["jobs"]
    assert [f["frame_index"] for f in tail] == list(range(390, 400))
    assert all(len(f["people"]) == 1 for f in tail)
    assert job_id in [j["job_id"] for j in listed]


def test_cancel_stops_the_job_and_ends_its_stream(live: LiveServer) -> None:
    pose = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]
    body: dict[str, Any] = {"keypoints_2d": [pose] * 20_000, "image_size": [640, 480], "model": "pstmo-9"}
    with live.client(timeout_s=300) as client:
        job_id = client.post("/v1/jobs", json=body).json()["job_id"]
        cancelled = client.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200
        assert cancelled.json()["state"] == "cancelled"
        lines = read_ndjson(client, job_id)
        status = client.get(f"/v1/jobs/{job_id}").json()
        again = client.delete(f"/v1/jobs/{job_id}")
        results = client.get(f"/v1/jobs/{job_id}/results")
    assert status["state"] == "cancelled"
    assert status["frames_done"] < 20_000
    assert lines[-1]["error"]["status"] == 409
    assert all("frame_index" in line for line in lines[:-1])
    assert again.json()["state"] == "cancelled"
    assert_problem(results, 409, "conflict")


def test_job_errors_are_problems(live: LiveServer) -> None:
    image = encode_image(person_image(64, 96))
    with live.client() as client:
        assert_problem(client.post("/v1/jobs", files={"file": ("a.jpg", image, "image/jpeg")}), 415)
        assert_problem(client.get("/v1/jobs/not-a-job"), 404, "unknown-job")
        assert_problem(client.get("/v1/jobs/" + "A" * 24), 404, "unknown-job")  # an id of before the slot tags
        assert_problem(client.get("/v1/jobs/" + new_job_id("")), 404, "unknown-job")
        assert_problem(client.delete("/v1/jobs/" + new_job_id("someone")), 404, "unknown-job")
        assert_problem(client.delete("/v1/jobs/" + "A" * 24 + "/results"), 405)
        bad = client.post("/v1/jobs", json={"keypoints_2d": [[[1.0, 2.0]] * 3], "image_size": [640, 480]})
        assert_problem(bad, 422)
        assert_problem(client.post("/v1/jobs", content=b"{nope", headers={"content-type": "application/json"}), 400)
        unknown = client.post(
            "/v1/jobs", files={"file": ("c.mp4", encode_clip(frames=3), "video/mp4")}, data={"model": "nope"}
        )
        assert_problem(unknown, 404, "unknown-model")


def test_pose3d_ndjson_streams_the_frames_of_the_whole_response(live: LiveServer) -> None:
    clip = encode_clip(frames=12, width=64, height=96)
    pose = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]
    keypoints = {"keypoints_2d": [pose] * 40, "image_size": [640, 480], "model": "pstmo-9"}
    with live.client() as client:
        streamed = client.post("/v1/pose3d", files={"file": ("c.mp4", clip)}, headers={"Accept": NDJSON})
        whole = client.post("/v1/pose3d", files={"file": ("c.mp4", clip)})
        kp_streamed = client.post("/v1/pose3d", json=keypoints, headers={"Accept": NDJSON})
        kp_whole = client.post("/v1/pose3d", json=keypoints)
    assert streamed.status_code == 200, streamed.text
    assert streamed.headers["content-type"].startswith(NDJSON)
    assert_same_frames([json.loads(line) for line in streamed.text.splitlines()], whole.json()["frames"])
    assert_same_frames([json.loads(line) for line in kp_streamed.text.splitlines()], kp_whole.json()["frames"])


def test_deadline_problems_name_the_setting_and_the_header(live: LiveServer) -> None:
    clip = encode_clip(frames=6, width=64, height=96)
    tiny = {"X-Request-Timeout": "0.000001"}
    with live.client() as client:
        streamed = client.post("/v1/pose3d", files={"file": ("c.mp4", clip)}, headers={"Accept": NDJSON, **tiny})
        whole = client.post("/v1/pose3d", files={"file": ("c.mp4", clip)}, headers=tiny)
    for response in (streamed, whole):
        detail = assert_problem(response, 504, "deadline-exceeded")["detail"]
        assert "X-Request-Timeout" in detail
        assert "engine.request_timeout_s" in detail
        assert "POSE3D_ENGINE__REQUEST_TIMEOUT_S" in detail


def test_a_job_whose_stored_frames_are_lost_answers_410(live: LiveServer) -> None:
    pose = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]
    body: dict[str, Any] = {"keypoints_2d": [pose] * 12, "image_size": [640, 480], "model": "pstmo-9"}
    with live.client(timeout_s=300) as client:
        job_id = client.post("/v1/jobs", json=body).json()["job_id"]
        assert wait_state(client, job_id, {"done", "failed"})[-1]["state"] == "done"
        store = live.app.state.jobs.store
        assert isinstance(store, MemoryJobStore)
        del store._entry(job_id).frames[5]  # as Redis's eviction would
        document = client.get(f"/v1/jobs/{job_id}/results")
        lines = read_ndjson(client, job_id)
    assert_problem(document, 410, "job-results-lost")
    assert "frames 5 to 11 of its 12" in document.json()["detail"]
    assert [line["frame_index"] for line in lines[:-1]] == list(range(5))
    assert lines[-1]["error"]["type"] == "urn:pose3d:problem:job-results-lost"
