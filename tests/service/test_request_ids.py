"""A client's request id is kept only when it is 1-128 characters of ``A-Za-z0-9._:-`` (docs/api.md): one with a
line break after it is replaced by a fresh id, as any other unsafe id is."""

from __future__ import annotations

import re

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
