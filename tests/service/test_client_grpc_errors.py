"""The Python client over gRPC raises the error class REST raises for the same request: an image over the gateway's
message limit is ``PayloadTooLarge`` (REST: 413), not ``Overloaded`` — gRPC itself refuses it with an unreported
RESOURCE_EXHAUSTED, which is no refusal of the service's to come back to later."""

from __future__ import annotations

import pytest

from service.client import AsyncPose3DClient
from service.errors import PayloadTooLarge
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.test_grpc_public import settings


async def test_an_image_over_the_message_limit_is_payload_too_large_as_over_rest() -> None:
    public = PublicGrpcServer(settings(limits={"max_body_bytes": 64 * 1024}), Metrics())
    await public.start()
    public.engine = ToyEngine()
    try:
        with pytest.raises(PayloadTooLarge, match="larger than max"):
            await AsyncPose3DClient(grpc=f"127.0.0.1:{public.port}").estimate(b"\xff\xd8\xff" + bytes(128 * 1024))
    finally:
        await public.stop(0)
