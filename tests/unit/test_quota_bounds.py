"""Quota settings whose token bucket Redis (or the memory store) cannot hold are refused when the settings are
built, naming the fields: ``burst / rate_per_s`` past 9e15 s made the bucket's EXPIRE overflow, so every request of
every key was a 503 (quota store failed), and an infinite rate gave NaN tokens."""

from __future__ import annotations

import math
import secrets

import pytest
from pydantic import ValidationError

from service.config import MAX_BUCKET_REFILL_S, GatewaySettings, QuotaSettings, build_settings
from service.security.quotas import MemoryQuotaStore, QuotaStore, RedisQuotaStore
from tests.conftest import RedisServer


@pytest.mark.parametrize(
    ("quotas", "named"),
    [
        ({"rate_per_s": 1e-12, "burst": 10_000}, "burst / rate_per_s"),  # 1e16 s: Redis's EXPIRE overflows
        ({"rate_per_s": 5e-324, "burst": 1}, "burst / rate_per_s"),
        ({"rate_per_s": math.inf}, "rate_per_s"),
        ({"rate_per_s": math.nan}, "rate_per_s"),
        ({"burst": 10**400}, "burst"),
    ],
)
def test_a_bucket_no_store_can_hold_is_refused(quotas: dict[str, float], named: str) -> None:
    with pytest.raises(ValidationError, match=named) as info:
        build_settings(GatewaySettings, None, security={"quotas": quotas})
    assert info.value.errors()[0]["loc"][:2] == ("security", "quotas"), info.value.errors()


def test_off_and_ordinary_quotas_still_validate() -> None:
    assert QuotaSettings(rate_per_s=0.0, burst=10**15).rate_per_s == 0.0  # off: no bucket at all
    assert QuotaSettings(rate_per_s=1 / 86_400, burst=1000).burst == 1000  # 1000 a day


async def _take_twice(store: QuotaStore, rate: float, burst: int) -> tuple[float, float]:
    key = "k" + secrets.token_hex(4)
    try:
        return await store.take_token(key, 0.0, rate, burst), await store.take_token(key, 0.0, rate, burst)
    finally:
        await store.aclose()


@pytest.mark.redis
async def test_the_slowest_bucket_allowed_works_on_redis_and_in_memory(redis_server: RedisServer) -> None:
    settings = QuotaSettings(rate_per_s=1 / MAX_BUCKET_REFILL_S, burst=1)  # the bound itself
    for store in (RedisQuotaStore(redis_server.url, prefix="t" + secrets.token_hex(4)), MemoryQuotaStore()):
        first, second = await _take_twice(store, settings.rate_per_s, settings.burst)
        assert first == 0.0
        assert second == pytest.approx(MAX_BUCKET_REFILL_S, rel=1e-6)  # an honest, finite Retry-After
