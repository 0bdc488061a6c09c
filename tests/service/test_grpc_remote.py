"""RemoteEngineClient ↔ worker servicer over real gRPC servers on free ports (toy engines behind them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from model.joints import NUM_JOINTS
from service.engine.types import (
    EstimateOptions,
    EstimateResult,
    Frame,
    FrameResult,
    KeypointFrame,
    Progress,
    Work,
)
from service.engine.work import collect, push
from service.errors import OverCapacity, Unavailable, UnknownModel, UnknownStream
from service.rpc.remote_engine import RemoteEngineClient, worker_target
from service.rpc.server import WORKER_SERVICE
from service.worker.server import WorkerServicer
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


async def until(predicate: Callable[[], Awaitable[bool]], attempts: int = 200) -> None:
    """Poll ``predicate`` (each try yields to the loop for 50 ms) until it holds; fail after ``attempts``."""
    for _ in range(attempts):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


async def both_serving(client: RemoteEngineClient, workers: list[Worker]) -> None:
    """Estimate until every worker has taken a call (gRPC's round_robin picks a backend once its health check
    says SERVING), then zero the counts."""

    async def every_worker_called() -> bool:
        await collect(client, Work("warm", [keypoints(0)]))
        return all(w.engine.calls for w in workers)

    await until(every_worker_called)
    for w in workers:
        w.engine.calls = 0


async def test_round_robin_and_results_cross_the_wire(two_workers: list[Worker]) -> None:
    client = RemoteEngineClient([w.address for w in two_workers])
    assert client.workers.target == "ipv4:" + ",".join(w.address for w in two_workers)
    await client.start()
    try:
        await both_serving(client, two_workers)
        for i in range(6):
            result = await collect(client, Work(f"r{i}", [keypoints(i)]))
            np.testing.assert_array_equal(result.frames[0].people[0].keypoints_2d, keypoints(i).keypoints)
            assert result.frames[0].people[0].keypoints_3d[0, 2] == np.float32(i / 1000.0)
        assert [w.engine.calls for w in two_workers] == [3, 3]  # gRPC's round_robin, no balancer of ours
        assert (await client.models())[0].name == "toy"
        status = await client.ready()
        assert status.ready
        assert status.detail == {f"worker {client.workers.target}": "serving (channel ready)"}
    finally:
        await client.aclose()


async def test_service_errors_keep_their_class(two_workers: list[Worker]) -> None:
    client = RemoteEngineClient([w.address for w in two_workers])
    await client.start()
    try:
        with pytest.raises(UnknownModel, match="nope"):
            await collect(client, Work("r", [keypoints(0)], EstimateOptions(model="nope")))
        with pytest.raises(UnknownStream):
            await push(client, "missing", [keypoints(0)])
    finally:
        await client.aclose()


class Refusing(ToyEngine):
    """A toy engine over capacity: every estimate is refused with a Retry-After."""

    async def submit(self, work: Work) -> AsyncGenerator[Progress]:
        if work.stream is None:
            self.calls += 1
            raise OverCapacity("over capacity: the queue is full", retry_after_s=2.5)
        async for step in super().submit(work):
            yield step


async def test_an_over_capacity_refusal_is_an_answer_not_retried_on_another_worker() -> None:
    refusing, idle = await start_worker(Refusing("full")), await start_worker(ToyEngine("idle"))
    client = RemoteEngineClient([refusing.address, idle.address])
    await client.start()
    try:

        async def both_picked() -> bool:  # until round_robin has both backends (one refuses, one serves)
            await _estimate_or_refusal(client)
            return bool(refusing.engine.calls and idle.engine.calls)

        await until(both_picked)
        before = (refusing.engine.calls, idle.engine.calls)
        outcomes = [await _estimate_or_refusal(client) for _ in range(2)]  # one turn each
        refusals = [o for o in outcomes if isinstance(o, OverCapacity)]
        assert len(refusals) == 1
        assert refusals[0].retry_after_s == 2.5  # the Retry-After reaches the caller
        assert refusing.engine.calls == before[0] + 1  # never retried by the channel's policy ...
        assert idle.engine.calls == before[1] + 1  # ... nor on the idle worker
    finally:
        await client.aclose()
        await refusing.server.stop(0)
        await idle.server.stop(0)


async def _estimate_or_refusal(client: RemoteEngineClient) -> EstimateResult | OverCapacity:
    try:
        return await collect(client, Work("probe", [keypoints(0)]))
    except OverCapacity as refusal:
        return refusal


async def test_dead_worker_is_skipped_retried_and_reported(two_workers: list[Worker]) -> None:
    a, b = two_workers
    a.engine.streams = b.engine.streams  # as if both shared Redis
    client = RemoteEngineClient([a.address, b.address])
    await client.start()
    try:
        await both_serving(client, two_workers)
        info = await client.open_stream(EstimateOptions())
        await push(client, info.stream_id, [keypoints(0)])
        await a.server.stop(0)  # a worker dies: its calls are retried by the channel's policy on the other
        results = await push(client, info.stream_id, [keypoints(1)])
        assert [r.frame_index for r in results] == [1]
        for i in range(4):  # every request succeeds while one worker is down
            await collect(client, Work(f"r{i}", [keypoints(i)]))
        assert (await client.ready()).ready
        await b.server.stop(0)
        with pytest.raises(Unavailable):
            await collect(client, Work("r", [keypoints(0)]))

        async def not_ready() -> bool:
            status = await client.ready()
            return not status.ready and status.detail[f"worker {client.workers.target}"].startswith("not serving")

        await until(not_ready)
    finally:
        await client.aclose()


async def test_loading_worker_answers_unavailable_and_is_passed_over() -> None:
    loading = await start_worker(None, serving=False)
    loading.servicer.engine = None
    ready = await start_worker(ToyEngine("ready"))
    client = RemoteEngineClient([loading.address, ready.address])
    await client.start()
    try:
        for i in range(3):
            await collect(client, Work(f"r{i}", [keypoints(i)]))
        assert ready.engine.calls == 3  # client-side health checking: a NOT_SERVING worker gets no calls
        assert (await client.ready()).ready
        async with grpc.aio.insecure_channel(loading.address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=WORKER_SERVICE)
            )
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await client.aclose()
        await loading.server.stop(0)
        await ready.server.stop(0)


@dataclass
class Gate:
    entered: asyncio.Event
    holder: str = ""


class HoldFirst(ToyEngine):
    """Toy engines sharing one gate: the first frame pushed to any of them is held (its worker is then stopped);
    every later one is answered."""

    def __init__(self, name: str, gate: Gate) -> None:
        super().__init__(name)
        self.gate = gate

    async def toy_push(self, stream_id: str, frame: Frame) -> list[FrameResult]:
        if not self.gate.entered.is_set():
            self.gate.holder = self.name
            self.gate.entered.set()
            await asyncio.Event().wait()  # held until its server is stopped
        return await super().toy_push(stream_id, frame)


async def test_call_in_flight_when_its_worker_dies_is_retried_elsewhere() -> None:
    gate = Gate(asyncio.Event())
    a, b = await start_worker(HoldFirst("a", gate)), await start_worker(HoldFirst("b", gate))
    a.engine.streams = b.engine.streams  # as if both shared Redis
    client = RemoteEngineClient([a.address, b.address])
    await client.start()
    try:
        info = await client.open_stream(EstimateOptions())
        pushing = asyncio.create_task(push(client, info.stream_id, [keypoints(0)]))
        await asyncio.wait_for(gate.entered.wait(), 30)
        holder, other = (a, b) if gate.holder == "a" else (b, a)
        await holder.server.stop(0)  # dies with the call in flight: the channel's retry policy sends it on
        results = await asyncio.wait_for(pushing, 30)
        assert [r.frame_index for r in results] == [0]
        assert other.engine.frames_pushed == 1
    finally:
        await client.aclose()
        for w in (a, b):
            await w.server.stop(0)


def one_address_for(workers: list[Worker]) -> str:
    """One gRPC target naming several workers, as a DNS name over a headless Service resolves to many pods."""
    return "ipv4:" + ",".join(w.address for w in workers)


async def test_one_address_naming_many_workers_is_passed_through_balanced_and_health_checked() -> None:
    a, b = await start_worker(ToyEngine("a")), await start_worker(ToyEngine("b"))
    loading = await start_worker(ToyEngine("loading"), serving=False)
    client = RemoteEngineClient([one_address_for([a, b, loading])])
    assert client.workers.target == one_address_for([a, b, loading])
    await client.start()
    try:
        await both_serving(client, [a, b])
        for i in range(12):
            await collect(client, Work(f"r{i}", [keypoints(i)]))
        assert a.engine.calls == b.engine.calls == 6  # gRPC's round_robin spreads one target over its backends
        assert loading.engine.calls == 0  # a NOT_SERVING backend gets no calls
        await a.server.stop(0)  # a backend dies: its calls are retried on the other, no error reaches us
        for i in range(6):
            await collect(client, Work(f"s{i}", [keypoints(i)]))
        assert b.engine.calls >= 6
    finally:
        await client.aclose()
        for w in (a, b, loading):
            await w.server.stop(0)


def test_worker_addresses_become_one_grpc_target() -> None:
    assert worker_target(["127.0.0.1:1", "10.0.0.2:2"]) == "ipv4:127.0.0.1:1,10.0.0.2:2"
    assert worker_target(["[::1]:1", "[fe80::1]:2"]) == "ipv6:[::1]:1,[fe80::1]:2"
    assert worker_target(["localhost:7", "127.0.0.2:8"]) == "ipv4:127.0.0.1:7,127.0.0.2:8"  # names resolved once
    assert worker_target(["dns:///workers.pose3d.svc:50061"]) == "dns:///workers.pose3d.svc:50061"
    assert worker_target(["worker:50061"]) == "worker:50061"  # one name: gRPC's dns resolver, re-resolved
    with pytest.raises(ValueError, match="only one"):
        worker_target(["dns:///a:1", "127.0.0.1:2"])
    with pytest.raises(ValueError, match="mix"):
        worker_target(["127.0.0.1:1", "[::1]:2"])
    with pytest.raises(ValueError, match="host:port"):
        worker_target(["127.0.0.1", "127.0.0.2:1"])
    with pytest.raises(ValueError, match="at least one"):
        worker_target([])
    for never in ("127.0.0.1:notaport", "127.0.0.1", "worker:0", "worker:70000"):  # one alone: 503s for ever, before
        with pytest.raises(ValueError, match="host:port"):
            worker_target([never])


def test_a_gateway_given_a_worker_address_it_can_never_reach_stops_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from service.cli import main

    assert main(["gateway", "--port", "0", "--grpc-port", "0", "--workers", "127.0.0.1:notaport"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if " INFO " not in line]
    assert len(err) == 1, err
    assert "'127.0.0.1:notaport' is not host:port" in err[0]
    assert "--workers" in err[0]
