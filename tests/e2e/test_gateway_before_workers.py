"""A gateway started before any worker is alive (a Kubernetes rollout, a worker crash loop): it answers
/healthz at once, says NOT ready on /readyz and gRPC health, refuses work with 503 + Retry-After, and
serves as soon as a worker comes up."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import RedisServer
from tests.e2e.deployment import deployment_env, health_status, new_gateway, new_worker, wait_all_serving

KEYPOINTS = {
    "keypoints_2d": [[[100.0 + j * 5, 100.0 + j * 8, 0.9] for j in range(17)] for _ in range(3)],
    "image_size": [640, 480],
    "joint_set": "coco",
}


@pytest.mark.e2e
@pytest.mark.slow
def test_gateway_serves_health_before_workers_and_work_once_one_is_up(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = deployment_env(redis_server.url)
    worker = new_worker("late-worker", env, tmp_path)  # its port is chosen, the process not started yet
    gateway = new_gateway([worker], env, tmp_path)
    gateway.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                alive = httpx.get(gateway.url + "/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert gateway.alive(), gateway.tail()
                assert time.monotonic() < deadline, "the gateway never answered /healthz"
                time.sleep(0.1)
        assert alive.status_code == 200
        ready = httpx.get(gateway.url + "/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.headers["retry-after"]
        assert f"worker {worker.address}" in ready.json()["detail"]
        assert health_status(gateway.grpc_address, "pose3d.v1.Pose3D") == "NOT_SERVING"
        refused = httpx.post(gateway.url + "/v1/pose3d", json=KEYPOINTS, timeout=30)
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.headers["retry-after"]

        worker.start()
        wait_all_serving([worker])
        gateway.wait_ready()
        served = httpx.post(gateway.url + "/v1/pose3d", json=KEYPOINTS, timeout=60)
        assert served.status_code == 200, served.text
        assert len(served.json()["frames"]) == 3
    finally:
        gateway.stop()
        worker.stop()
