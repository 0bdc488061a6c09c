"""Issue 19 item 4: one in-flight bound for every transport (REST and gRPC used to count apart: 2 × 256)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient

from service.config import LimitSettings, QuotaSettings
from service.gateway.app import create_app
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from service.security.guard import Security
from tests.security.support import POSE, grpc_meta
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.security_support import bearer, make_keys, secured


async def test_rest_and_grpc_share_one_in_flight_bound(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    settings = secured(keys, QuotaSettings(rate_per_s=0.0), limits=LimitSettings(max_inflight_requests=1))
    metrics = Metrics()
    security = Security(settings, metrics)  # one per process, as run_gateway builds it for both listeners
    public = PublicGrpcServer(settings, metrics, security)
    port = await public.start()
    public.engine = ToyEngine()
    try:
        with TestClient(create_app(settings, engine=ToyEngine(), metrics=metrics, security=security)) as http:
            assert http.get("/v1/models", headers=bearer(keys.alice)).status_code == 200
            with security.in_flight.slot():  # one request in progress, on whichever transport
                busy = http.get("/v1/models", headers=bearer(keys.alice))
                assert busy.status_code == 429, busy.text
                assert busy.headers["Retry-After"]
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub: Any = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
                    request = pb.EstimateRequest(keypoints=pb.KeypointsInput(
                        frames=[pb.Keypoints2D(xy=[v for p in POSE for v in p[:2]])], image_width=640,
                        image_height=480, joint_set=pb.JOINT_SET_COCO))  # fmt: skip
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await stub.Estimate(request, metadata=grpc_meta(keys.alice))
                    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert security.in_flight.count == 0
            assert http.get("/v1/models", headers=bearer(keys.alice)).status_code == 200
    finally:
        await public.stop(0)
