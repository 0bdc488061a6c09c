"""A revoked key's open ``WatchJob`` ends UNAUTHENTICATED, as its open ``StreamEstimate`` does
(docs/ownership-and-quotas.md, "Revoking a key": gateways refuse it within ``security.api_keys_check_s``).

The watch followed its job for as long as the job ran (hours, for a long clip), so a leaked and revoked key kept
reading the job's results. The job here stays queued (no runner claims it) and so the watch would never end on its
own; the test's own wait is only a failure guard.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from service.gateway.grpc_server import PublicGrpcServer
from service.gateway.jobs.runner import JobRunner, Jobs
from service.jobs.memory import MemoryJobStore
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from service.security.guard import Security
from service.security.keys import revoke_key
from service.security.owned_engine import owned
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.security_support import Clock, Keys, make_keys, secured

GUARD_S = 20.0
POSE = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
async def stub(keys: Keys) -> AsyncIterator[Any]:
    settings = secured(keys)
    metrics = Metrics()
    public = PublicGrpcServer(settings, metrics, Security(settings, metrics, clock=Clock()))
    store = MemoryJobStore(600.0)
    public.servicer.jobs = Jobs(store, JobRunner(store, settings, lambda: None))  # never started: jobs stay queued
    port = await public.start()
    public.engine = owned(ToyEngine(), public.security)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
    await channel.close()
    await public.stop(0)


async def test_a_revoked_keys_open_watch_ends_unauthenticated(stub: Any, keys: Keys) -> None:
    meta = (("authorization", f"Bearer {keys.alice}"),)
    body = json.dumps({"keypoints_2d": [POSE] * 5, "image_size": [640, 480]})
    job = await stub.SubmitJob(pb.SubmitJobRequest(keypoints_json=body), metadata=meta)
    watch = stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), metadata=meta)
    assert (await stub.GetJob(pb.GetJobRequest(job_id=job.job_id), metadata=meta)).state == "queued"
    revoke_key(keys.file, keys.alice_id)
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await asyncio.wait_for(watch.read(), GUARD_S)
    assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
    trailers = dict(ended.value.trailing_metadata() or ())
    assert trailers.get("pose3d-error-type") == "unauthenticated"
