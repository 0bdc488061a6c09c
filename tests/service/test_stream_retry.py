"""The stream client's reconnection: exponential backoff with jitter, a time budget, and retries before the stream
opened (a gateway that is not up yet, or restarting, when the client starts)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.client.stream import StreamClient, StreamConfig
from service.errors import Unavailable
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from tests.conftest import free_port
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.test_grpc_public import frames, settings


def test_backoff_doubles_with_full_jitter_up_to_the_cap() -> None:
    client = StreamClient("x:1", iter(()), StreamConfig(resume_backoff_s=0.5, resume_backoff_max_s=5.0), print)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (40, 5.0)]:
        waits = [client.backoff_s(attempt) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2  # jittered over the whole range, not a fixed delay


async def test_the_client_retries_before_the_stream_opened() -> None:
    port = free_port()
    results: list[dict[str, Any]] = []
    config = StreamConfig(paced=False, resume_backoff_s=0.05, resume_backoff_max_s=0.2, retry_budget_s=60.0)
    client = StreamClient(f"127.0.0.1:{port}", frames(12), config, results.append)
    run = asyncio.create_task(client.run())
    while client.stats.resumes < 2:  # the gateway is not up: the client has failed to open twice
        assert not run.done(), run
        await asyncio.sleep(0.01)
    server = PublicGrpcServer(settings(grpc_port=port), Metrics())
    await server.start()
    server.engine = ToyEngine()
    try:
        stats = await run
    finally:
        await server.stop(0)
    assert stats.resumes >= 2
    assert [r["frame_index"] for r in results] == list(range(12))


async def test_the_budget_ends_an_outage() -> None:
    config = StreamConfig(paced=False, resume_backoff_s=0.01, resume_backoff_max_s=0.02, retry_budget_s=0.0)
    client = StreamClient(f"127.0.0.1:{free_port()}", frames(3), config, print)
    with pytest.raises(Unavailable, match="could not resume"):
        await client.run()
