"""Finding 1 (issue 20, OWASP API1 / BOLA): a job belongs to the key that submitted it.

Two real ``pose3d serve`` gateways share one Redis (job store and quota store). Key A submits a job on gateway 1;
key B, on either gateway, cannot list it, read its status, read its results (JSON or NDJSON), watch it, or cancel
it (REST and gRPC): every such call is 404 / NOT_FOUND, exactly as for an id that never existed. A keeps full use.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from tests.conftest import RedisServer
from tests.e2e.deployment import Gateway
from tests.security.support import KeyFile, bearer, grpc_meta, keypoints_body, make_key_file, secured_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow]

NDJSON = "application/x-ndjson"


@pytest.fixture(scope="module")
def gateways(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[tuple[list[Gateway], KeyFile]]:
    tmp = tmp_path_factory.mktemp("jobs-ownership")
    keys = make_key_file(tmp, ["a", "b"])
    pair = [secured_gateway(f"gateway-{n}", keys, redis_server.url, tmp) for n in (1, 2)]
    for gateway in pair:
        gateway.start()
    try:
        for gateway in pair:
            gateway.wait_ready(180.0)
        yield pair, keys
    finally:
        for gateway in pair:
            gateway.stop()


def finished_job(gateway: Gateway, key: str) -> str:
    """Submit a 30-frame keypoint job with ``key`` and wait until it is done (a deadline, not a sleep)."""
    submitted = httpx.post(f"{gateway.url}/v1/jobs", json=keypoints_body(30), headers=bearer(key), timeout=60)
    assert submitted.status_code == 202, submitted.text
    job_id: str = submitted.json()["job_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = httpx.get(f"{gateway.url}/v1/jobs/{job_id}", headers=bearer(key), timeout=30).json()["state"]
        if state == "done":
            return job_id
        assert state in ("queued", "running"), state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not done within 120 s")


def assert_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith(":unknown-job")


async def grpc_code(stub: Any, method: str, request: Any, key: str) -> grpc.StatusCode:
    try:
        call = getattr(stub, method)(request, metadata=grpc_meta(key))
        if method == "WatchJob":
            async for _ in call:
                pass
        else:
            await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_another_key_cannot_see_read_watch_or_cancel_a_job(gateways: tuple[list[Gateway], KeyFile]) -> None:
    (first, second), keys = gateways
    a, b = keys.keys["a"], keys.keys["b"]
    job_id = await asyncio.to_thread(finished_job, first, a)
    for gateway in (first, second):
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            listed = await http.get("/v1/jobs", headers=bearer(b))
            assert listed.status_code == 200
            assert job_id not in {j["job_id"] for j in listed.json()["jobs"]}
            assert_not_found(await http.get(f"/v1/jobs/{job_id}", headers=bearer(b)))
            assert_not_found(await http.get(f"/v1/jobs/{job_id}/results", headers=bearer(b)))
            assert_not_found(await http.get(f"/v1/jobs/{job_id}/results", headers=bearer(b) | {"Accept": NDJSON}))
            assert_not_found(await http.delete(f"/v1/jobs/{job_id}", headers=bearer(b)))
            # the owner, from either gateway: listed, readable, intact (B's DELETE cancelled nothing)
            assert job_id in {j["job_id"] for j in (await http.get("/v1/jobs", headers=bearer(a))).json()["jobs"]}
            assert (await http.get(f"/v1/jobs/{job_id}", headers=bearer(a))).json()["state"] == "done"
            results = await http.get(f"/v1/jobs/{job_id}/results", headers=bearer(a))
            assert results.status_code == 200
            assert len(json.loads(results.content)["frames"]) == 30
        async with grpc.aio.insecure_channel(gateway.grpc_address) as channel:
            stub: Any = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
            for method, request in (("GetJob", pb.GetJobRequest(job_id=job_id)),
                                    ("WatchJob", pb.WatchJobRequest(job_id=job_id)),
                                    ("CancelJob", pb.CancelJobRequest(job_id=job_id))):  # fmt: skip
                assert await grpc_code(stub, method, request, b) is grpc.StatusCode.NOT_FOUND, method
            assert await grpc_code(stub, "GetJob", pb.GetJobRequest(job_id=job_id), a) is grpc.StatusCode.OK
