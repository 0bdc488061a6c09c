"""RemoteEngineClient ↔ worker servicer over real gRPC servers on free ports (toy engines behind them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from model.joints import NUM_JOINTS
from service.engine.types import EstimateOptions, EstimateRequest, KeypointFrame
from service.errors import Unavailable, UnknownModel, UnknownStream
from service.rpc.remote_engine import RemoteEngineClient
from service.rpc.server import WORKER_SERVICE
from service.worker.servicer import WorkerServicer
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.worker_support import serve_worker


@dataclass
class Worker:
    address: str
    server: grpc.aio.Server
    servicer: WorkerServicer
    engine: ToyEngine


async def start_worker(engine: ToyEngine | None, serving: bool = True) -> Worker:
    server, servicer, address = await serve_worker(engine, serving=serving)
    return Worker(address, server, servicer, engine or ToyEngine())


@pytest.fixture
async def two_workers() -> AsyncIterator[list[Worker]]:
    workers = [await start_worker(ToyEngine("a")), await start_worker(ToyEngine("b"))]
    yield workers
    for w in workers:
        await w.server.stop(0)


def keypoints(index: int) -> KeypointFrame:
    xy = np.arange(2 * NUM_JOINTS, dtype=np.float32).reshape(NUM_JOINTS, 2) + index
    return KeypointFrame(xy, np.ones(NUM_JOINTS, np.float32), (640, 480), frame_index=index)


async def test_round_robin_and_results_cross_the_wire(two_workers: list[Worker]) -> None:
    client = RemoteEngineClient([w.address for w in two_workers], health_interval_s=0.2)
    await client.start()
    try:
        for i in range(6):
            result = await client.estimate(EstimateRequest(f"r{i}", [keypoints(i)]))
            np.testing.assert_array_equal(result.frames[0].people[0].keypoints_2d, keypoints(i).keypoints)
            assert result.frames[0].people[0].keypoints_3d[0, 2] == np.float32(i / 1000.0)
        assert [w.engine.calls for w in two_workers] == [3, 3]
        assert (await client.models())[0].name == "toy"
        status = await client.ready()
        assert status.ready
        assert set(status.detail.values()) == {"serving"}
    finally:
        await client.aclose()


async def test_service_errors_keep_their_class(two_workers: list[Worker]) -> None:
    client = RemoteEngineClient([w.address for w in two_workers])
    await client.start()
    try:
        with pytest.raises(UnknownModel, match="nope"):
            await client.estimate(EstimateRequest("r", [keypoints(0)], EstimateOptions(model="nope")))
        with pytest.raises(UnknownStream):
            await client.push_frame("missing", keypoints(0))
    finally:
        await client.aclose()


async def test_dead_worker_is_skipped_retried_and_reported(two_workers: list[Worker]) -> None:
    a, b = two_workers
    client = RemoteEngineClient([a.address, b.address], health_interval_s=0.2)
    await client.start()
    try:
        info = await client.open_stream(EstimateOptions())
        owner, other = (a, b) if info.stream_id in a.engine.streams else (b, a)
        other.engine.streams[info.stream_id] = info  # as if both shared Redis
        await client.push_frame(info.stream_id, keypoints(0))
        await owner.server.stop(0)  # the sticky worker dies: the next frame goes to the other one
        results = await client.push_frame(info.stream_id, keypoints(1))
        assert [r.frame_index for r in results] == [1]
        assert other.engine.frames_pushed == 1
        for i in range(4):  # every request succeeds while one worker is down
            await client.estimate(EstimateRequest(f"r{i}", [keypoints(i)]))
        status = await client.ready()
        assert status.ready
        assert status.detail[f"worker {owner.address}"].startswith("unavailable") or status.detail[
            f"worker {owner.address}"
        ].startswith("unreachable")
        assert status.detail[f"worker {other.address}"] == "serving"
        await other.server.stop(0)
        with pytest.raises(Unavailable):
            await client.estimate(EstimateRequest("r", [keypoints(0)]))
        await asyncio.sleep(0.5)
        assert not (await client.ready()).ready
    finally:
        await client.aclose()


async def test_loading_worker_answers_unavailable_and_is_passed_over() -> None:
    loading = await start_worker(None, serving=False)
    loading.servicer.engine = None
    ready = await start_worker(ToyEngine("ready"))
    client = RemoteEngineClient([loading.address, ready.address], health_interval_s=0.2)
    await client.start()
    try:
        status = await client.ready()
        assert status.detail[f"worker {loading.address}"] == "not_serving"
        for i in range(3):
            await client.estimate(EstimateRequest(f"r{i}", [keypoints(i)]))
        assert ready.engine.calls == 3
        async with grpc.aio.insecure_channel(loading.address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=WORKER_SERVICE)
            )
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await client.aclose()
        await loading.server.stop(0)
        await ready.server.stop(0)


async def test_call_in_flight_when_its_worker_dies_is_retried_elsewhere() -> None:
    slow = await start_worker(ToyEngine("slow", delay_s=2.0))
    fast = await start_worker(ToyEngine("fast"))
    client = RemoteEngineClient([slow.address, fast.address], health_interval_s=5.0)
    await client.start()
    try:
        info = await client.open_stream(EstimateOptions())
        owner, other = (slow, fast) if info.stream_id in slow.engine.streams else (fast, slow)
        other.engine.streams[info.stream_id] = info  # as if both shared Redis
        if owner is fast:  # make the stream's worker the slow one
            slow.engine.streams[info.stream_id] = info
            client.pool.remember(info.stream_id, client.pool.workers[0])
        push = asyncio.create_task(client.push_frame(info.stream_id, keypoints(0)))
        await asyncio.sleep(0.3)
        await slow.server.stop(0)  # dies with the call in flight
        results = await asyncio.wait_for(push, 5.0)
        assert [r.frame_index for r in results] == [0]
        assert fast.engine.frames_pushed == 1
    finally:
        await client.aclose()
        await fast.server.stop(0)


def one_address_for(workers: list[Worker]) -> str:
    """One gRPC target naming several workers, as a DNS name over a headless Service resolves to many pods."""
    return "ipv4:" + ",".join(w.address for w in workers)


async def test_one_address_naming_many_workers_is_balanced_health_checked_and_retried() -> None:
    a, b = await start_worker(ToyEngine("a")), await start_worker(ToyEngine("b"))
    loading = await start_worker(ToyEngine("loading"), serving=False)
    client = RemoteEngineClient([one_address_for([a, b, loading])], health_interval_s=0.2)
    await client.start()
    try:
        for _ in range(50):  # client-side health checking needs a moment to see every backend
            if (await client.ready()).ready:
                break
            await asyncio.sleep(0.1)
        for i in range(12):
            await client.estimate(EstimateRequest(f"r{i}", [keypoints(i)]))
        assert a.engine.calls > 0
        assert b.engine.calls > 0  # gRPC's round_robin spreads one address over its backends
        assert loading.engine.calls == 0  # a NOT_SERVING backend gets no calls
        assert a.engine.calls + b.engine.calls == 12
        await a.server.stop(0)  # a backend dies: its calls are retried on the other, no error reaches us
        for i in range(6):
            await client.estimate(EstimateRequest(f"s{i}", [keypoints(i)]))
        assert b.engine.calls >= 6
    finally:
        await client.aclose()
        for w in (a, b, loading):
            await w.server.stop(0)
