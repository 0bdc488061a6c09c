"""A key's open-stream slots in Redis live as long as its streams (docs/ownership-and-quotas.md, ``MAX_STREAMS``).

Every use of a stream renews its owner record and its score in the key's set of streams (``owner_of``), but only
the claim set that set's expiry (``stream_ttl_s`` + 60 s). A stream in use for longer than that lost its slot with
the whole set: the key could then open ``MAX_STREAMS`` more streams beside the ones it still used, and the next use
wrote the set back without any expiry (a Redis key kept for ever). The passage of time is played by the set's own
remaining lifetime, set as it stands just before it would expire (no clock is involved).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from service.security.quotas import RedisQuotaStore
from tests.conftest import RedisServer

pytestmark = pytest.mark.redis

TTL_S = 300.0


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisQuotaStore]:
    quotas = RedisQuotaStore(redis_server.url, prefix=f"test-{secrets.token_hex(4)}")
    yield quotas
    await quotas.aclose()


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client: aioredis.Redis = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_a_stream_in_use_keeps_its_keys_slot_past_the_claims_expiry(
    store: RedisQuotaStore, raw: aioredis.Redis
) -> None:
    assert await store.claim_stream("alice", "s1", 0.0, TTL_S, limit=1)
    streams = store._k("streams", "alice")
    await raw.pexpire(streams, 5_000)  # 355 s after the claim, the stream used all along: 5 s left
    assert await store.owner_of("s1", 0.0, TTL_S) == "alice"  # a frame of the stream
    assert await raw.pttl(streams) >= TTL_S * 1000 - 5_000  # lives as long as the stream's own record
    assert await raw.pttl(store._k("owner", "s1")) > 0
    assert not await store.claim_stream("alice", "s2", 0.0, TTL_S, limit=1)  # still the key's one stream


async def test_a_set_of_streams_written_back_by_a_lookup_expires(store: RedisQuotaStore, raw: aioredis.Redis) -> None:
    assert await store.claim_stream("bob", "s1", 0.0, TTL_S, limit=4)
    streams = store._k("streams", "bob")
    await raw.delete(streams)  # gone (expired or evicted) while its stream lives on
    assert await store.owner_of("s1", 0.0, TTL_S) == "bob"
    assert await raw.zcard(streams) == 1
    assert 0 < await raw.pttl(streams) <= (TTL_S + 61) * 1000  # not -1: no key without an expiry
