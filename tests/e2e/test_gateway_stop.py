"""A gateway told to stop (SIGTERM) while a client watches a job's NDJSON results stops at once: the results end
with a 503 line (stream again with ?after=, from another gateway). Before, uvicorn waited for every open response
to end, so one watched job that had not finished held the gateway (its jobs not handed over) until the
orchestrator's SIGKILL — or for ever under `pose3d serve`. Other open responses are cut after shutdown_grace_s."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from service.jobs.redis import RedisJobStore
from service.jobs.store import JobRecord, new_job_id
from tests.conftest import RedisServer, free_port
from tests.e2e.test_startup import _pose3d, _wait_ready
from tests.service.test_rest_settings import TINY_TOML

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

STOP_BUDGET_S = 90.0  # a budget for a busy machine, not a speed claim
POSE = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]


async def _job_held_elsewhere(url: str) -> str:
    """A queued job whose lease another gateway holds for an hour: its results stream waits for frames."""
    store = RedisJobStore(url, ttl_s=3600.0)
    try:
        job_id = new_job_id("")
        body = json.dumps({"keypoints_2d": [POSE] * 12, "image_size": [640, 480], "model": "pstmo-9"}).encode()
        record = JobRecord(job_id=job_id, kind="keypoints", request_id="r1", created_s=time.time(),
                           params={"model": "pstmo-9"}, frames_total=12)  # fmt: skip
        await store.create(record, body)
        assert await store.claim(job_id, "elsewhere-" + secrets.token_hex(4), time.time(), 3600.0) is not None
        return job_id
    finally:
        await store.aclose()


@pytest.mark.slow
def test_sigterm_stops_a_gateway_a_client_watches_a_job_on(tmp_path: Path, redis_server: RedisServer) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text("shutdown_grace_s = 1.0\n" + TINY_TOML)
    port = free_port()
    serve = _pose3d("serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(config),
                    env={"POSE3D_REDIS_URL": redis_server.url})  # fmt: skip
    try:
        _wait_ready(serve, port)
        job_id = asyncio.run(_job_held_elsewhere(redis_server.url))
        watching, lines = threading.Event(), list[str]()

        def watch() -> None:
            url = f"http://127.0.0.1:{port}/v1/jobs/{job_id}/results"
            headers = {"Accept": "application/x-ndjson"}
            with httpx.stream("GET", url, headers=headers, timeout=STOP_BUDGET_S) as response:
                assert response.status_code == 200
                watching.set()
                lines.extend(line for line in response.iter_lines() if line)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        assert watching.wait(STOP_BUDGET_S), "the job's results stream did not open"
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=STOP_BUDGET_S)
        assert serve.returncode == 0, err
        assert "Traceback" not in out + err, err
        watcher.join(STOP_BUDGET_S)
        (last,) = lines  # no frames: the job never ran
        problem = json.loads(last)["error"]
        assert problem["status"] == 503, problem
        assert "stopping" in problem["detail"], problem
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()
