"""A worker reply the gateway cannot read is the service's fault, never the caller's.

The link's codec refuses a malformed message with ``ValueError`` — on the worker, the gateway's request (answered
INVALID_ARGUMENT). On the gateway a worker's reply (another version's, or a broken one) raised the same ValueError,
which the public gRPC surface took for the client's invalid input: ``INVALID_ARGUMENT`` for a valid request, and a
client that reads the code as "fix your request". It is an INTERNAL error (REST 500), as any other fault of the
service.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator

import grpc
import pytest

from service.engine.types import EstimateOptions, Work
from service.engine.work import collect
from service.errors import InternalError
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.worker.v1 import worker_pb2 as wpb
from service.proto_gen.pose3d.worker.v1 import worker_pb2_grpc
from service.rpc.handlers import Context
from service.rpc.remote_engine import RemoteEngineClient
from service.rpc.server import WORKER_SERVICE, add_health_and_reflection, new_server, set_serving
from service.worker.server import WorkerServicer
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.test_grpc_public import keypoints_msg, settings, stub_for
from tests.service.test_grpc_remote import keypoints


class BrokenReplies(WorkerServicer):
    """A worker whose results page says one person and carries none (its other calls are the toy engine's)."""

    async def Submit(self, request: wpb.Work, context: Context) -> AsyncGenerator[wpb.Progress]:  # noqa: N802
        yield wpb.Progress(results=wpb.Results(frame_index=[0], timestamp_s=[math.nan], people=[1]))


@pytest.fixture
async def remote() -> AsyncIterator[RemoteEngineClient]:
    server = new_server(16 * 1024 * 1024)
    worker_pb2_grpc.add_WorkerServicer_to_server(BrokenReplies(Metrics(), ToyEngine()), server)  # type: ignore[no-untyped-call]
    await set_serving(add_health_and_reflection(server, [WORKER_SERVICE]), [WORKER_SERVICE], serving=True)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = RemoteEngineClient([f"127.0.0.1:{port}"])
    await client.start()
    yield client
    await client.aclose()
    await server.stop(0)


async def test_an_unreadable_worker_reply_is_an_internal_error(remote: RemoteEngineClient) -> None:
    with pytest.raises(InternalError, match="worker"):
        await collect(remote, Work("r", [keypoints(0)], EstimateOptions()))


async def test_the_public_grpc_call_answers_internal_not_invalid_argument(remote: RemoteEngineClient) -> None:
    public = PublicGrpcServer(settings(), Metrics())
    await public.start()
    public.engine = remote
    channel, stub = stub_for(public.port)
    try:
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.Estimate(pb.EstimateRequest(keypoints=keypoints_msg(1)))
    finally:
        await public.stop(0)
    assert failed.value.code() is grpc.StatusCode.INTERNAL
