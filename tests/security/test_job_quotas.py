"""Finding 2 (issue 20): jobs no longer skip quotas.

Per key: at most ``security.quotas.max_open_jobs`` queued or running jobs, and at most ``max_job_bytes`` of staged
input plus stored results; past either, ``POST /v1/jobs`` is 429 problem+json with ``Retry-After`` (an input that
alone passes the byte limit, 413 without it: it can never fit) and gRPC
``SubmitJob`` RESOURCE_EXHAUSTED with ``retry-after-s``; a job whose results would pass the byte limit fails with
the same problem instead of filling the store. The real app in-process (a process adds nothing here) over an engine
whose job work waits at a gate, so "open" jobs stay open without any timing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient

from service.config import QuotaSettings
from service.engine.types import Progress, Work
from service.gateway.grpc_server import PublicGrpcServer
from service.gateway.jobs.runner import JobRunner, Jobs
from service.jobs.memory import MemoryJobStore
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from service.security.door import job_limits
from service.security.guard import Security
from service.security.owned_engine import owned
from tests.security.support import grpc_meta, keypoints_body
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.security_support import Keys, bearer, make_keys, secured


class GatedEngine(ToyEngine):
    """The toy engine, whose job work (frames for a stream) waits until ``gate`` is set."""

    def __init__(self, open_gate: bool = False) -> None:
        super().__init__()
        self.gate = threading.Event()
        if open_gate:
            self.gate.set()

    async def submit(self, work: Work) -> AsyncGenerator[Progress]:
        while work.stream is not None and not self.gate.is_set():  # noqa: ASYNC110 — set from the test's thread
            await asyncio.sleep(0.01)
        async for step in super().submit(work):
            yield step


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


def app(keys: Keys, engine: GatedEngine, quotas: QuotaSettings) -> TestClient:
    from service.gateway.app import create_app

    return TestClient(create_app(secured(keys, quotas), engine=engine))


def submit(http: TestClient, key: str, frames: int = 3) -> Any:
    return http.post("/v1/jobs", json=keypoints_body(frames, model="toy"), headers=bearer(key))


def assert_job_quota_refusal(response: Any) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith(":job-quota-exceeded")
    assert int(response.headers["Retry-After"]) >= 1


@pytest.fixture
def gated() -> Iterator[GatedEngine]:
    engine = GatedEngine()
    yield engine
    engine.gate.set()  # frees the threads still waiting


def test_open_jobs_per_key_are_bounded_over_rest(keys: Keys, gated: GatedEngine) -> None:
    with app(keys, gated, QuotaSettings(max_open_jobs=2)) as http:
        first, second = submit(http, keys.alice), submit(http, keys.alice)
        assert (first.status_code, second.status_code) == (202, 202)
        assert_job_quota_refusal(submit(http, keys.alice))
        assert submit(http, keys.bob).status_code == 202  # another key's quota is its own
        cancelled = http.delete(f"/v1/jobs/{first.json()['job_id']}", headers=bearer(keys.alice))
        assert cancelled.json()["state"] == "cancelled"
        assert submit(http, keys.alice).status_code == 202  # an ended job frees its slot


def test_stored_job_bytes_per_key_are_bounded(keys: Keys) -> None:
    limit = 8_000
    with app(keys, GatedEngine(open_gate=True), QuotaSettings(max_job_bytes=limit)) as http:
        assert len(json.dumps(keypoints_body(40, model="toy"))) > limit
        too_large = submit(http, keys.alice, frames=40)  # its input alone passes the limit: waiting would not help
        assert too_large.status_code == 413, too_large.text
        assert too_large.json()["type"].endswith(":payload-too-large")
        assert "Retry-After" not in too_large.headers
        job = submit(http, keys.alice, frames=10)  # fits; its results (about 1.5 kB a frame) do not
        assert job.status_code == 202, job.text
        deadline = time.monotonic() + 60
        status = job.json()
        while status["state"] in ("queued", "running") and time.monotonic() < deadline:
            status = http.get(f"/v1/jobs/{status['job_id']}", headers=bearer(keys.alice)).json()
        assert status["state"] == "failed", status
        assert status["error"]["type"].endswith(":job-quota-exceeded")
        assert status["frames_done"] * 1_000 < limit


async def test_submit_job_over_grpc_is_resource_exhausted_past_the_open_job_limit(
    keys: Keys, gated: GatedEngine
) -> None:
    settings = secured(keys, QuotaSettings(max_open_jobs=2))
    metrics = Metrics()
    security = Security(settings, metrics)
    store = MemoryJobStore(60.0, limits=job_limits(settings.security.quotas))
    runner = JobRunner(store, settings, lambda: gated)
    runner.start()
    public = PublicGrpcServer(settings, metrics, security)
    public.servicer.jobs = Jobs(store, runner)
    port = await public.start()
    public.engine = owned(gated, security)
    body = json.dumps(keypoints_body(3, model="toy"))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: Any = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
            for _ in range(2):
                await stub.SubmitJob(pb.SubmitJobRequest(keypoints_json=body), metadata=grpc_meta(keys.alice))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.SubmitJob(pb.SubmitJobRequest(keypoints_json=body), metadata=grpc_meta(keys.alice))
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            trailers = dict(refused.value.trailing_metadata() or ())
            assert trailers["pose3d-error-type"] == "job-quota-exceeded"
            assert float(trailers["retry-after-s"]) >= 1.0
            await stub.SubmitJob(pb.SubmitJobRequest(keypoints_json=body), metadata=grpc_meta(keys.bob))
    finally:
        gated.gate.set()
        await public.stop(0)
        await runner.aclose()
