"""Finding 6 (issue 20) and the WebSocket close codes of finding 7, against a real ``pose3d serve``.

- A WebSocket and a gRPC ``StreamEstimate`` opened before ``pose3d keys revoke`` are closed within the key file's
  reload interval (4401 / UNAUTHENTICATED), not answered for ever.
- Frames inside one WebSocket draw from the key's token bucket: past it the session closes with 4429.
- A handshake without a valid key is closed with 4401 — a close code the client sees, not an HTTP 403.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from tests.e2e.deployment import Gateway
from tests.security.support import POSE, KeyFile, bearer, grpc_meta, make_key_file, secured_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RATE, BURST = 1.0, 4
CLOSED_WITHIN_S = 60.0
"""A budget for a busy machine: the reload interval is 0.2 s."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, KeyFile]]:
    tmp = tmp_path_factory.mktemp("revocation")
    keys = make_key_file(tmp, ["ws", "grpc", "limited", "other"])
    quotas = {"POSE3D_SECURITY__QUOTAS__RATE_PER_S": str(RATE), "POSE3D_SECURITY__QUOTAS__BURST": str(BURST)}
    gateway = secured_gateway("gateway", keys, "", tmp, **quotas)
    gateway.start()
    try:
        gateway.wait_ready(180.0)
        yield gateway, keys
    finally:
        gateway.stop()


def ws_url(gateway: Gateway) -> str:
    return f"ws://127.0.0.1:{gateway.port}/v1/streams/ws"


def frame(index: int) -> str:
    return json.dumps({"type": "frame", "frame_index": index, "keypoints_2d": POSE, "image_size": [640, 480]})


async def opened(ws: ClientConnection) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "open", "model": "pstmo-9", "mode": "causal"}))
    reply: dict[str, Any] = json.loads(await ws.recv())
    assert reply["type"] == "opened", reply
    return reply


async def drain(source: Any) -> None:
    """Read (``recv`` or ``read``) until the server ends the connection or the call, within the budget."""
    receive = source.recv if isinstance(source, ClientConnection) else source.read
    async with asyncio.timeout(CLOSED_WITHIN_S):
        while True:
            await receive()


async def close_code(ws: ClientConnection) -> int:
    """Read until the server closes; its close code."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await drain(ws)
    assert closed.value.rcvd is not None, "the connection dropped without a close frame"
    return int(closed.value.rcvd.code)


async def test_revoking_a_key_closes_its_open_websocket_and_grpc_stream(served: tuple[Gateway, KeyFile]) -> None:
    gateway, keys = served
    async with (
        connect(ws_url(gateway), additional_headers=bearer(keys.keys["ws"])) as ws,
        grpc.aio.insecure_channel(gateway.grpc_address) as channel,
    ):
        await opened(ws)
        await ws.send(frame(0))
        assert json.loads(await ws.recv())["type"] == "results"
        stub: Any = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
        call = stub.StreamEstimate(metadata=grpc_meta(keys.keys["grpc"]))
        await call.write(
            pb.StreamEstimateRequest(
                open=pb.StreamOpen(options=pb.Options(model="pstmo-9", mode=pb.WINDOW_MODE_CAUSAL))
            )
        )
        assert (await call.read()).WhichOneof("message") == "opened"

        keys.revoke("ws")
        keys.revoke("grpc")

        assert await close_code(ws) == 4401
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await drain(call)
        assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def send_frames(ws: ClientConnection, answered: list[int]) -> None:
    """Send up to 200 frames one after another, counting the answered ones, until the server closes."""
    for index in range(200):
        await ws.send(frame(index))
        reply = json.loads(await ws.recv())
        if reply["type"] == "results":
            answered.append(index)
        else:
            assert reply["problem"]["status"] == 429, reply


async def test_websocket_frames_draw_from_the_keys_bucket(served: tuple[Gateway, KeyFile]) -> None:
    gateway, keys = served
    answered: list[int] = []
    async with connect(ws_url(gateway), additional_headers=bearer(keys.keys["limited"])) as ws:
        started = time.monotonic()  # the handshake spent one token; every frame spends one more
        await opened(ws)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await send_frames(ws, answered)
        elapsed = time.monotonic() - started
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4429
    assert len(answered) <= BURST - 1 + RATE * elapsed + 1, (answered, elapsed)


async def test_a_refused_handshake_is_a_close_code_not_an_http_403(served: tuple[Gateway, KeyFile]) -> None:
    gateway, _ = served
    for headers in ({}, bearer("p3d_00000000_" + "x" * 43)):
        async with connect(ws_url(gateway), additional_headers=headers) as ws:
            assert await close_code(ws) == 4401
