"""The stream client's reconnection: exponential backoff with jitter, a time budget, and retries before the stream
opened (a gateway that is not up yet, or restarting, when the client starts). The waits go through the client's
``sleep``, which these tests hold at a gate instead of sleeping."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tenacity import RetryCallState, Retrying

from service.client.stream import StreamClient, StreamConfig, backoff
from service.config import LimitSettings
from service.errors import Unavailable
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from tests.conftest import free_port
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.test_grpc_public import frames, settings


def test_backoff_doubles_with_full_jitter_up_to_the_cap() -> None:
    wait = backoff(StreamConfig(resume_backoff_s=0.5, resume_backoff_max_s=5.0))
    state = RetryCallState(Retrying(), None, (), {})
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (40, 5.0)]:
        state.attempt_number = attempt
        waits = [wait(state) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2  # jittered over the whole range, not a fixed delay


async def test_the_client_retries_before_the_stream_opened() -> None:
    port = free_port()
    results: list[dict[str, Any]] = []
    client = StreamClient(
        f"127.0.0.1:{port}", frames(12), StreamConfig(paced=False, retry_budget_s=600.0), results.append
    )
    waits: list[float] = []
    failed_twice, server_up = asyncio.Event(), asyncio.Event()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:  # the gateway is not up: the client has failed to open twice
            failed_twice.set()
            await server_up.wait()

    client.sleep = sleep
    reasons: list[str] = []  # why each resume happened, for the assertion's message
    count_resume = client._count_resume

    def count_and_note(state: RetryCallState) -> None:
        reasons.append(repr(state.outcome.exception() if state.outcome is not None else None))
        count_resume(state)

    client._count_resume = count_and_note  # type: ignore[method-assign,assignment]
    run = asyncio.create_task(client.run())
    await failed_twice.wait()
    server = PublicGrpcServer(settings(grpc_port=port), Metrics())
    await server.start()
    server.engine = ToyEngine()
    server_up.set()
    try:
        stats = await run
    finally:
        await server.stop(0)
    assert stats.resumes == 2, reasons  # the two before the server was up, no more
    assert 0.0 <= waits[0] <= 0.5  # the defaults: 0.5 s doubling
    assert 0.0 <= waits[1] <= 1.0
    assert [r["frame_index"] for r in results] == list(range(12))


async def test_the_budget_ends_an_outage() -> None:
    client = StreamClient(f"127.0.0.1:{free_port()}", frames(3), StreamConfig(paced=False, retry_budget_s=0.0), print)
    with pytest.raises(Unavailable, match="could not resume"):
        await client.run()
    assert client.stats.resumes == 0


async def test_the_attempts_end_an_outage() -> None:
    client = StreamClient(f"127.0.0.1:{free_port()}", frames(3), StreamConfig(paced=False, resume_attempts=3), print)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    client.sleep = sleep
    with pytest.raises(Unavailable, match="could not resume"):
        await client.run()
    assert client.stats.resumes == len(waits) == 3  # three reconnections, the fourth failure ends it
    assert all(0.0 <= w <= ceiling for w, ceiling in zip(waits, [0.5, 1.0, 2.0], strict=True))


async def test_a_result_starts_a_new_outage() -> None:
    """One reconnection allowed per outage, two outages: the stream ends whole, as the count starts again."""
    engine = ToyEngine(delay_s=0.01)
    servers = [PublicGrpcServer(settings(), Metrics())]
    port = await servers[0].start()
    servers[0].engine = engine
    results: list[dict[str, Any]] = []
    dropped, up = asyncio.Event(), asyncio.Event()

    def collect(result: dict[str, Any]) -> None:
        results.append(result)
        if len(results) in (10, 25):
            dropped.set()

    async def restart_twice() -> None:
        for _ in range(2):
            await dropped.wait()
            dropped.clear()
            up.clear()
            await servers[-1].stop(0)
            servers.append(PublicGrpcServer(settings(grpc_port=port), Metrics()))
            await servers[-1].start()
            servers[-1].engine = engine  # the engine's streams outlive the gateway
            up.set()

    async def sleep(seconds: float) -> None:
        await up.wait()  # reconnect once the new gateway listens

    client = StreamClient(f"127.0.0.1:{port}", frames(40), StreamConfig(paced=False, resume_attempts=1), collect)
    client.sleep = sleep
    try:
        stats, _ = await asyncio.gather(client.run(), restart_twice())
    finally:
        for server in servers:
            await server.stop(0)
    assert stats.resumes == 2
    assert [r["frame_index"] for r in results] == list(range(40))


async def test_a_refusal_with_retry_after_is_retried_no_sooner() -> None:
    """A gateway whose engine is still loading refuses the stream: UNAVAILABLE with ``retry-after-s`` (here 4 s). The
    client comes back after that long at the soonest, not after its own backoff (0.5 s at most on a first attempt)."""
    server = PublicGrpcServer(settings(limits=LimitSettings(retry_after_s=4.0)), Metrics())
    port = await server.start()  # no engine yet: every call is refused
    results: list[dict[str, Any]] = []
    client = StreamClient(f"127.0.0.1:{port}", frames(3), StreamConfig(paced=False), results.append)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        server.engine = ToyEngine()  # loaded by the time the client comes back

    client.sleep = sleep
    try:
        stats = await client.run()
    finally:
        await server.stop(0)
    assert stats.resumes == 1
    assert waits[0] >= 4.0
    assert [r["frame_index"] for r in results] == [0, 1, 2]
