"""A client's request id is kept only when it is 1-128 characters of ``A-Za-z0-9._:-`` (docs/api.md): one with a
line break after it is replaced by a fresh id, as any other unsafe id is; a gRPC call's id is its ``x-request-id``
whether or not API keys are on."""

from __future__ import annotations

import re

import grpc
import pytest

from service.gateway.grpc_server import PublicGrpcServer
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.test_grpc_public import keypoints_msg, server, stub_for

__all__ = ["server"]  # the fixture


async def test_a_grpc_request_id_with_a_trailing_line_break_is_replaced(
    server: tuple[PublicGrpcServer, ToyEngine],
) -> None:
    public, _ = server
    channel, stub = stub_for(public.port)
    async with channel:
        kept = await stub.Estimate(pb.EstimateRequest(keypoints=keypoints_msg(1), request_id="client-42"))
        assert kept.request_id == "client-42"
        for unsafe in ("client-42\n", "client 42", "x" * 129):
            reply = await stub.Estimate(pb.EstimateRequest(keypoints=keypoints_msg(1), request_id=unsafe))
            assert re.fullmatch(r"[0-9a-f]{32}", reply.request_id), (unsafe, reply.request_id)


async def test_a_grpc_call_s_request_id_is_its_x_request_id_with_keys_or_without(
    server: tuple[PublicGrpcServer, ToyEngine],
) -> None:
    """Without API keys too, a call's id is its ``x-request-id`` metadata (else a fresh one): a hidden 5xx detail
    names it, as the log line does — it said 'request id -' — and an Estimate without its own ``request_id``
    answers with it, as REST answers with its ``X-Request-ID``."""
    public, _ = server
    assert not public.security.enabled
    channel, stub = stub_for(public.port)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as unavailable:  # jobs not wired: a 503 whose detail is hidden
            await stub.GetJob(pb.GetJobRequest(job_id="x"), metadata=(("x-request-id", "client-7"),))
        assert unavailable.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "(request id client-7;" in (unavailable.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as unnamed:
            await stub.GetJob(pb.GetJobRequest(job_id="x"))
        assert re.search(r"\(request id [0-9a-f]{32};", unnamed.value.details() or ""), unnamed.value.details()
        reply = await stub.Estimate(pb.EstimateRequest(keypoints=keypoints_msg(1)), metadata=(("x-request-id", "c-8"),))
        assert reply.request_id == "c-8"
        own = pb.EstimateRequest(keypoints=keypoints_msg(1), request_id="c-9")
        assert (await stub.Estimate(own, metadata=(("x-request-id", "c-8"),))).request_id == "c-9"
