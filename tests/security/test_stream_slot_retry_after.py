"""A refusal past ``MAX_STREAMS`` says when a slot frees (docs/ownership-and-quotas.md).

It said ``Retry-After: 1`` though a key's slot frees only at a close or when one of its streams idles out
(``engine.stream_ttl_s``, default 300 s, after its last use): a client retrying blindly every second spent its
rate quota for nothing. Now the refusal's retry time is the time until the first of the key's streams idles out,
on REST, WebSocket and gRPC alike, with either quota store. The clock is the test's (the memory store's), or the
Redis server's (the store's slots are set just before they expire).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from service.config import QuotaSettings
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from service.security.guard import Security
from service.security.owned_engine import owned
from service.security.quotas import MemoryQuotaStore, RedisQuotaStore
from tests.conftest import RedisServer
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.security_support import Clock, Keys, bearer, make_keys, secured

ONE_STREAM = QuotaSettings(rate_per_s=0.0, max_streams=1)
TTL_S = 300.0  # engine.stream_ttl_s's default


def rest_app(keys: Keys, clock: Clock) -> TestClient:
    from service.gateway.app import create_app

    settings = secured(keys, ONE_STREAM)
    metrics = Metrics()
    security = Security(settings, metrics, clock=clock)
    return TestClient(create_app(settings, engine=ToyEngine(), metrics=metrics, security=security))


def test_rest_and_websocket_refusals_wait_for_the_first_stream_to_idle_out(tmp_path: Path) -> None:
    keys, clock = make_keys(tmp_path), Clock()
    with rest_app(keys, clock) as http:
        assert http.post("/v1/streams", json={}, headers=bearer(keys.alice)).status_code == 201
        clock.now += 100.0  # the stream unused since: it idles out 200 s from now
        refused = http.post("/v1/streams", json={}, headers=bearer(keys.alice))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "200"
        with http.websocket_connect("/v1/streams/ws", headers=bearer(keys.alice)) as ws:
            ws.send_json({"type": "open"})
            refusal = ws.receive_json()
            with pytest.raises(WebSocketDisconnect):
                ws.receive_json()
        assert refusal["problem"]["status"] == 429
        assert refusal["problem"]["retry_after_s"] == pytest.approx(200.0)
        clock.now += 200.0  # it idled out: the slot is free
        assert http.post("/v1/streams", json={}, headers=bearer(keys.alice)).status_code == 201


async def test_grpc_refusal_waits_for_the_first_stream_to_idle_out(tmp_path: Path) -> None:
    keys, clock = make_keys(tmp_path), Clock()
    settings = secured(keys, ONE_STREAM)
    metrics = Metrics()
    public = PublicGrpcServer(settings, metrics, Security(settings, metrics, clock=clock))
    await public.start()
    public.engine = owned(ToyEngine(), public.security)
    calls: list[Any] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{public.port}") as channel:
            stub: Any = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
            for _ in range(2):
                call = stub.StreamEstimate(metadata=(("authorization", f"Bearer {keys.alice}"),))
                calls.append(call)  # left open: a half-closed call would close its stream
                await call.write(pb.StreamEstimateRequest(open=pb.StreamOpen()))
                if len(calls) == 1:
                    assert (await call.read()).opened.stream_id
                    clock.now += 30.0
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await calls[1].read()
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        trailers = dict(refused.value.trailing_metadata() or ())
        assert float(trailers["retry-after-s"]) == pytest.approx(TTL_S - 30.0)
    finally:
        for call in calls:
            call.cancel()
        await public.stop(0)


async def test_the_memory_store_tells_when_the_first_slot_frees() -> None:
    store = MemoryQuotaStore()
    assert await store.slot_frees_in("alice", 0.0) is None
    assert await store.claim_stream("alice", "a", 0.0, TTL_S, limit=2)
    assert await store.claim_stream("alice", "b", 50.0, TTL_S, limit=2)
    assert await store.slot_frees_in("alice", 100.0) == pytest.approx(200.0)
    await store.release_stream("alice", "a")  # closed: b is the first now
    assert await store.slot_frees_in("alice", 100.0) == pytest.approx(250.0)
    assert await store.slot_frees_in("alice", 400.0) is None  # b idled out


@pytest.mark.redis
async def test_the_redis_store_tells_when_the_first_slot_frees(redis_server: RedisServer) -> None:
    store = RedisQuotaStore(redis_server.url, prefix=f"test-{secrets.token_hex(4)}")
    raw: aioredis.Redis = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await store.slot_frees_in("alice", 0.0) is None
        assert await store.claim_stream("alice", "a", 0.0, TTL_S, limit=2)
        assert await store.claim_stream("alice", "b", 0.0, TTL_S, limit=2)
        streams = store._k("streams", "alice")
        seconds, micros = await raw.time()
        now = seconds + micros / 1e6
        await raw.zadd(streams, {"a": now + 120.0, "b": now - 1.0})  # a used 180 s ago; b already idled out
        wait = await store.slot_frees_in("alice", 0.0)  # the store reads the server's clock, not ``now``
        assert wait is not None
        assert 110.0 < wait <= 120.0
    finally:
        await raw.aclose()
        await store.aclose()
