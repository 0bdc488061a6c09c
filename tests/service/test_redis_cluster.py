"""The frame buffer, the job store, the quotas and stream ownership against a real 3-node Redis Cluster
(``redis+cluster://``, redis-py's RedisCluster): the same contract tests as on one server (imported below and run
here with cluster-backed fixtures), plus what only a cluster shows — every script's keys in one slot while the
streams themselves spread over the nodes."""

from __future__ import annotations

import inspect
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from bench.redis_cluster import RedisClusterServers
from service.engine.framebuffer.base import FrameBuffer
from service.engine.framebuffer.redis import RedisFrameBuffer, stream_keys
from service.jobs.redis import RedisJobStore
from service.jobs.store import JobRecord, JobStore, new_job_id
from service.redis_client import connect, is_cluster_url
from service.security.quotas import MemoryQuotaStore, QuotaStore, RedisQuotaStore
from tests.unit import test_framebuffer, test_jobstore

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
async def make_buffer(redis_cluster: RedisClusterServers) -> AsyncIterator[Callable[[], FrameBuffer]]:
    made: list[FrameBuffer] = []

    def factory() -> FrameBuffer:
        made.append(RedisFrameBuffer(redis_cluster.url, ttl_s=60))
        return made[-1]

    yield factory
    for buf in made:
        await buf.aclose()


@pytest.fixture
async def store(redis_cluster: RedisClusterServers) -> AsyncIterator[JobStore]:
    s = RedisJobStore(redis_cluster.url, ttl_s=60.0, prefix="t" + secrets.token_hex(4), limits=test_jobstore.LIMITS)
    yield s
    await s.aclose()


def _contract_tests(module: Any, fixture: str) -> dict[str, Any]:
    """The module's tests that take only ``fixture`` (those written against one server's internals stay there)."""
    found = {}
    for name, fn in vars(module).items():
        if name.startswith("test_") and callable(fn) and set(inspect.signature(fn).parameters) == {fixture}:
            found[f"{name}_on_the_cluster"] = fn
    return found


_FRAMEBUFFER_TESTS = _contract_tests(test_framebuffer, "make_buffer")
_JOBSTORE_TESTS = _contract_tests(test_jobstore, "store")
globals().update(_FRAMEBUFFER_TESTS)
globals().update(_JOBSTORE_TESTS)


def test_the_contract_tests_are_here() -> None:
    assert len(_FRAMEBUFFER_TESTS) >= 5, _FRAMEBUFFER_TESTS
    assert len(_JOBSTORE_TESTS) >= 4, _JOBSTORE_TESTS
    for limits in ("test_open_and_stored_job_limits_per_key", "test_stored_bytes_limit_covers_input_and_results"):
        assert f"{limits}_on_the_cluster" in _JOBSTORE_TESTS  # the per-key limits, whose scripts read many jobs


def test_a_cluster_url_opens_a_cluster_client(redis_cluster: RedisClusterServers) -> None:
    assert is_cluster_url(redis_cluster.url)
    assert not is_cluster_url("redis://127.0.0.1:6379/0")
    assert isinstance(connect(redis_cluster.url), RedisCluster)


async def test_one_stream_in_one_slot_and_the_streams_over_every_node(redis_cluster: RedisClusterServers) -> None:
    slots = [{key_slot(k.encode()) for k in stream_keys(uuid.uuid4().hex)} for _ in range(64)]
    assert all(len(s) == 1 for s in slots)
    client = connect(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    try:
        await client.initialize()
        found = [client.get_node_from_key(stream_keys(uuid.uuid4().hex)[0]) for _ in range(64)]
        nodes = {node.port for node in found if node is not None}
    finally:
        await client.aclose()
    assert nodes == set(redis_cluster.ports)


async def _names(client: RedisCluster, prefix: str) -> list[bytes]:
    """Every key name under ``prefix`` on every node, but the global set of active jobs."""
    return [n async for n in client.scan_iter(match=f"{prefix}:*", count=1000) if not n.endswith(b":jobs:active")]


async def test_one_keys_jobs_in_one_slot_and_the_keys_over_every_node(redis_cluster: RedisClusterServers) -> None:
    client = connect(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    stores: list[RedisJobStore] = []
    try:
        for key in ("", "alice", "bob"):
            prefix = "t" + secrets.token_hex(4)
            stores.append(store := RedisJobStore(redis_cluster.url, ttl_s=60.0, prefix=prefix))
            for n in range(3):
                await store.create(JobRecord(new_job_id(key), "clip", "r", created_s=float(n), key=key), b"x")
            names = await _names(client, prefix)
            assert len(names) == 3 * 2 + 1, names  # each job's meta and input, and the key's index
            assert len({key_slot(n) for n in names}) == 1, names
        prefix = "t" + secrets.token_hex(4)
        stores.append(store := RedisJobStore(redis_cluster.url, ttl_s=60.0, prefix=prefix))
        for _ in range(48):
            key = uuid.uuid4().hex
            await store.create(JobRecord(new_job_id(key), "clip", "r", created_s=1.0, key=key), b"x")
        await client.initialize()
        nodes = {client.get_node_from_key(n.decode()) for n in await _names(client, prefix)}
        assert {node.port for node in nodes if node is not None} == set(redis_cluster.ports)
    finally:
        await client.aclose()
        for s in stores:
            await s.aclose()


async def _released(store: QuotaStore, key: str, stream: str) -> str:
    await store.release_stream(key, stream)
    return "released"


async def _quota_story(store: QuotaStore, key: str) -> list[Any]:
    """One key's rate and streams, and the streams' owners, through a sequence of calls. The Redis store reads the
    server's clock (every gateway the same one), not ``now``: the rate and the TTL leave an hour of margin, so no
    step depends on how long the steps take (expiry itself is the single server's tests' business)."""
    a, b, c = (f"{key}-{n}" for n in "abc")
    hour = 3600.0
    return [
        [await store.take_token(key, 100.0, rate=1 / hour, burst=2) > 0 for _ in range(3)],
        await store.claim_stream(key, a, 100.0, ttl_s=hour, limit=2),
        await store.claim_stream(key, b, 100.0, ttl_s=hour, limit=2),
        await store.claim_stream(key, c, 100.0, ttl_s=hour, limit=2),  # the limit
        await store.owner_of(a, 100.0, ttl_s=hour),
        await store.owner_of("nobody's", 100.0, ttl_s=hour),
        await _released(store, key, b),
        await store.owner_of(b, 100.0, ttl_s=hour),
        await store.claim_stream(key, c, 100.0, ttl_s=hour, limit=2),  # b's slot is free
        await store.claim_stream(key, b, 100.0, ttl_s=hour, limit=2),
    ]


async def test_quotas_and_stream_ownership_on_the_cluster_as_in_memory(redis_cluster: RedisClusterServers) -> None:
    key = "k" + secrets.token_hex(4)
    cluster_store = RedisQuotaStore(redis_cluster.url, prefix="t" + secrets.token_hex(4))
    try:
        on_cluster = await _quota_story(cluster_store, key)
    finally:
        await cluster_store.aclose()
    in_memory = await _quota_story(MemoryQuotaStore(), key)
    assert on_cluster == in_memory
    assert on_cluster == [[False, False, True], True, True, False, key, None, "released", None, True, False]
