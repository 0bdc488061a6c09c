"""Jobs as deployed: redis-server, two workers and a gateway as processes (tiny random-weight models). A clip job
survives a worker SIGKILL and a gateway SIGKILL + restart mid-job: 0 frames lost, results equal to the clip
posted whole. Each process dies by SIGKILL (no goodbye)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RedisServer
from tests.e2e.deployment import Gateway, Worker, deployment_env, new_gateway, new_worker, wait_all_serving
from tests.service.jobs_support import assert_same_frames, read_ndjson, submit_clip, wait_state
from tests.service.media_samples import encode_clip

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.redis]

FRAMES = 48


class JobDeployment:
    def __init__(self, redis: RedisServer, logs: Path) -> None:
        self.logs = logs
        self.env = deployment_env(redis.url)
        self.env.update(
            {"POSE3D_JOBS__LEASE_S": "2", "POSE3D_JOBS__CHUNK_FRAMES": "2", "POSE3D_JOBS__POLL_INTERVAL_S": "0.1"}
        )
        self.workers: list[Worker] = [new_worker(f"worker{i}", self.env, logs) for i in (1, 2)]
        self.gateway: Gateway = new_gateway(self.workers, self.env, logs)
        try:
            for w in self.workers:
                w.start()
            wait_all_serving(self.workers)
            self.gateway.start()
            self.gateway.wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.gateway.stop()
        for w in self.workers:
            w.stop()


@pytest.fixture(scope="module")
def deployment(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobDeployment]:
    deployed = JobDeployment(redis_server, tmp_path_factory.mktemp("jobs-deployment"))
    yield deployed
    deployed.stop()


def wait_progress(client: httpx.Client, job_id: str, at_least: int, timeout_s: float = 300.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(f"/v1/jobs/{job_id}").json()
        assert status["state"] in {"queued", "running"}, status
        if status["frames_done"] >= at_least:
            return int(status["frames_done"])
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} made no progress past {at_least} frames")


def test_job_survives_worker_sigkill_and_gateway_restart(deployment: JobDeployment) -> None:
    clip = encode_clip(frames=FRAMES, width=64, height=96, fps=4)
    gateway = deployment.gateway
    with httpx.Client(base_url=gateway.url, timeout=300) as client:
        job_id = submit_clip(client, clip)["job_id"]
        wait_progress(client, job_id, 4)
        deployment.workers[0].kill()
        before_restart = wait_progress(client, job_id, 12)
        first = read_ndjson(client, job_id, limit=6)
    gateway.kill()
    deployment.gateway = new_gateway(
        deployment.workers, deployment.env, deployment.logs, gateway.port, gateway.grpc_port
    )
    deployment.gateway.start()
    deployment.gateway.wait_ready()
    with httpx.Client(base_url=deployment.gateway.url, timeout=300) as client:
        resumed = client.get(f"/v1/jobs/{job_id}").json()
        assert resumed["frames_done"] >= before_restart  # nothing stored was lost with the gateway
        seen = wait_state(client, job_id, {"done", "failed", "cancelled"})
        rest = read_ndjson(client, job_id, after=first[-1]["frame_index"])
        whole = client.post("/v1/pose3d", files={"file": ("clip.mp4", clip, "video/mp4")})
    assert seen[-1]["state"] == "done", seen[-1]
    assert seen[-1]["attempts"] >= 2  # the restarted gateway took the job over
    assert seen[-1]["frames_done"] == FRAMES
    assert whole.status_code == 200, whole.text
    assert_same_frames(first + rest, whole.json()["frames"])
