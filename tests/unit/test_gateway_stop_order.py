"""At SIGTERM a gateway's gRPC side stops beside its REST drain, not after it: before, gRPC health said SERVING and
gRPC took new calls for as long as open REST responses drained (up to ``shutdown_grace_s``), so a balancer checking
gRPC health kept sending calls to a gateway on its way out."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvicorn

from service.gateway.grpc_server import _AnnouncingServer


async def test_the_grpc_stop_runs_while_rest_still_drains(monkeypatch: pytest.MonkeyPatch) -> None:
    rest_draining, rest_drained, grpc_stopped = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def rest_drain(self: uvicorn.Server, sockets: list[socket.socket] | None = None) -> None:
        rest_draining.set()
        await rest_drained.wait()  # an open REST response, held

    async def stop_grpc() -> None:
        grpc_stopped.set()

    monkeypatch.setattr(uvicorn.Server, "shutdown", rest_drain)
    stopping = asyncio.Event()
    server = _AnnouncingServer(uvicorn.Config(app="service.gateway.app:create_app"), None, stopping, stop_grpc)
    shutdown = asyncio.create_task(server.shutdown())
    await rest_draining.wait()
    await asyncio.wait_for(grpc_stopped.wait(), timeout=30)  # a guard only: it is set before REST has drained
    assert stopping.is_set()
    assert not shutdown.done()
    rest_drained.set()
    await shutdown
