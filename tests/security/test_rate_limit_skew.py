"""Finding 3 (issue 20): the shared rate limit holds across gateways whose clocks disagree.

Two limiter clients (two :class:`Security` objects, as two gateways build them) share one real redis-server; their
local clocks run 100 ms and 2 s behind. The bucket lives on the server's clock, so everything they admit together
stays within ``burst + rate × elapsed`` (elapsed read from the same server clock). On the old limiter each client
passed its own ``now``, and every alternation between them refilled the bucket by the skew.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from service.config import QuotaSettings
from service.errors import QuotaExceeded
from service.metrics import Metrics
from service.security.guard import Security
from service.security.quotas import RedisQuotaStore
from tests.conftest import RedisServer
from tests.service.security_support import make_keys, secured

pytestmark = pytest.mark.redis

RATE, BURST, ATTEMPTS = 10.0, 5, 400


async def server_time(url: str) -> float:
    client: aioredis.Redis = aioredis.Redis.from_url(url)
    try:
        seconds, micros = await client.time()
        return float(seconds) + float(micros) / 1e6
    finally:
        await client.aclose()


def skewed(behind_s: float) -> Callable[[], float]:
    """A gateway clock ``behind_s`` behind this machine's (read at each call)."""
    return lambda: time.time() - behind_s


async def test_two_gateways_100ms_and_2s_behind_admit_at_most_bound_plus_burst(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = secured(make_keys(tmp_path), QuotaSettings(rate_per_s=RATE, burst=BURST))
    gateways = [
        Security(settings, Metrics(), store=RedisQuotaStore(redis_server.url), clock=skewed(behind))
        for behind in (0.1, 2.0)
    ]
    key_id = f"skew{time.monotonic_ns() % 10**8:08d}"  # a bucket of its own on the shared server
    started = await server_time(redis_server.url)
    admitted = 0
    try:
        for attempt in range(ATTEMPTS):
            try:
                await gateways[attempt % 2].admit(key_id)
                admitted += 1
            except QuotaExceeded:
                pass
    finally:
        for gateway in gateways:
            await gateway.aclose()
    elapsed = await server_time(redis_server.url) - started
    bound = BURST + RATE * elapsed
    print(f"admitted {admitted} of {ATTEMPTS} in {elapsed:.3f} s (server clock); bound {bound:.1f}")
    assert admitted <= bound + 1, (admitted, elapsed)
    assert admitted >= BURST  # the burst itself is admitted
