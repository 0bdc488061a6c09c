"""Per-key quotas and stream ownership: token buckets, open-stream slots, owners — in memory or in Redis.

In memory, times come from the caller's injected monotonic clock (``now``, seconds). In Redis each operation is
one Lua script that reads **the server's clock** and ignores ``now`` (gateways whose clocks disagree would
otherwise refill a bucket by the skew; docs/ownership-and-quotas.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Final

from redis.exceptions import RedisError

from service.errors import Unavailable
from service.redis_client import RedisClient, connect


class QuotaStore(ABC):
    """What the security layer keeps per key and per stream."""

    @abstractmethod
    async def take_token(self, key_id: str, now: float, rate: float, burst: int) -> float:
        """Take one request token; 0.0 when allowed, else the seconds to wait (Retry-After)."""

    @abstractmethod
    async def claim_stream(self, key_id: str, stream_id: str, now: float, ttl_s: float, limit: int) -> bool:
        """Record ``key_id`` as the owner of a new stream, unless it already holds ``limit`` (0 = none) live ones."""

    @abstractmethod
    async def slot_frees_in(self, key_id: str, now: float) -> float | None:
        """Seconds until the first of ``key_id``'s live stream slots expires (the Retry-After of a refused claim:
        a slot frees only at a close or an expiry), or None when it holds none."""

    @abstractmethod
    async def owner_of(self, stream_id: str, now: float, ttl_s: float) -> str | None:
        """The stream's owner (its record's TTL restarts, as the stream's does), or None."""

    @abstractmethod
    async def release_stream(self, key_id: str, stream_id: str) -> None:
        """Forget the stream (closed): its slot frees at once."""

    async def aclose(self) -> None:  # noqa: B027 — optional hook
        """Release connections."""

    async def reachable(self) -> bool:
        """True when the store answers (always, in memory); Redis: a PING that also proves the password."""
        return True


@dataclass
class MemoryQuotaStore(QuotaStore):
    """One process's quotas (the embedded service)."""

    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    owners: dict[str, tuple[str, float]] = field(default_factory=dict)  # stream id -> (key id, expiry)
    slots: dict[str, dict[str, float]] = field(default_factory=dict)  # key id -> stream id -> expiry

    async def take_token(self, key_id: str, now: float, rate: float, burst: int) -> float:
        tokens, at = self.buckets.get(key_id, (float(burst), now))
        tokens = min(float(burst), tokens + max(0.0, now - at) * rate)  # refilled since ``at`` (as the Lua _TAKE)
        allowed = tokens >= 1.0
        self.buckets[key_id] = (tokens - 1.0 if allowed else tokens, now)
        return 0.0 if allowed else (1.0 - tokens) / rate

    async def claim_stream(self, key_id: str, stream_id: str, now: float, ttl_s: float, limit: int) -> bool:
        held = self.slots.setdefault(key_id, {})
        for sid in [s for s, expiry in held.items() if expiry <= now]:
            del held[sid]
            self.owners.pop(sid, None)
        if limit and len(held) >= limit:
            return False
        held[stream_id] = now + ttl_s
        self.owners[stream_id] = (key_id, now + ttl_s)
        return True

    async def slot_frees_in(self, key_id: str, now: float) -> float | None:
        live = [expiry - now for expiry in self.slots.get(key_id, {}).values() if expiry > now]
        return min(live, default=None)

    async def owner_of(self, stream_id: str, now: float, ttl_s: float) -> str | None:
        entry = self.owners.get(stream_id)
        if entry is None or entry[1] <= now:
            return None
        key_id = entry[0]
        self.owners[stream_id] = (key_id, now + ttl_s)
        self.slots.setdefault(key_id, {})[stream_id] = now + ttl_s
        return key_id

    async def release_stream(self, key_id: str, stream_id: str) -> None:
        self.slots.get(key_id, {}).pop(stream_id, None)
        self.owners.pop(stream_id, None)


_NOW: Final = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) + tonumber(t[2]) / 1e6\n"
"""The Redis server's clock, seconds (every gateway reads the same one)."""

_TAKE: Final = (
    _NOW
    + """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""
)

_CLAIM: Final = (
    _NOW
    + """
local ttl, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, sid in ipairs(stale) do redis.call('DEL', ARGV[5] .. sid) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(ttl) + 60)
redis.call('SET', KEYS[2], ARGV[6], 'PX', math.ceil(ttl * 1000))
return 1
"""
)

# KEYS: the key's streams → the seconds until its first live slot expires, or false (none)
_FREES_IN: Final = (
    _NOW
    + """
local first = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if #first == 0 then return false end
return tostring(tonumber(first[2]) - now)
"""
)

_OWNER: Final = (
    _NOW
    + """
local owner = redis.call('GET', KEYS[1])
if not owner then return false end
local ttl = tonumber(ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000))
redis.call('ZADD', ARGV[3] .. owner, now + ttl, ARGV[4])
redis.call('EXPIRE', ARGV[3] .. owner, math.ceil(ttl) + 60)  -- the key's set outlives its streams, as at the claim
return owner
"""
)


class RedisQuotaStore(QuotaStore):
    """Quotas shared by every gateway through one Redis (the frame buffer's)."""

    def __init__(self, url: str, prefix: str = "pose3d:sec") -> None:
        self._redis: RedisClient = connect(url)
        self._prefix = prefix
        self._take: Any = self._redis.register_script(_TAKE)
        self._claim: Any = self._redis.register_script(_CLAIM)
        self._owner: Any = self._redis.register_script(_OWNER)
        self._frees_in: Any = self._redis.register_script(_FREES_IN)

    def _k(self, kind: str, name: str) -> str:
        """A key's bucket is one key (any slot); a key's streams and the streams' owners are read together by one
        script, so they share the hash tag ``{owners}`` (one Redis Cluster slot)."""
        if kind == "bucket":
            return f"{self._prefix}:{kind}:{{{name}}}"
        return f"{self._prefix}:{{owners}}:{kind}:{name}"

    async def _call(self, op: Awaitable[Any]) -> Any:
        try:
            return await op
        except RedisError as e:  # the text (which may name the server) goes to the log, not to the client
            raise Unavailable(f"quota store (Redis) failed: {e}") from e

    async def take_token(self, key_id: str, now: float, rate: float, burst: int) -> float:
        return float(await self._call(self._take(keys=[self._k("bucket", key_id)], args=[rate, burst, now])))

    async def claim_stream(self, key_id: str, stream_id: str, now: float, ttl_s: float, limit: int) -> bool:
        keys = [self._k("streams", key_id), self._k("owner", stream_id)]
        args = [stream_id, now, ttl_s, limit, self._k("owner", ""), key_id]
        return bool(await self._call(self._claim(keys=keys, args=args)))

    async def slot_frees_in(self, key_id: str, now: float) -> float | None:
        wait = await self._call(self._frees_in(keys=[self._k("streams", key_id)], args=[now]))
        return None if wait is None else float(wait)

    async def owner_of(self, stream_id: str, now: float, ttl_s: float) -> str | None:
        args = [now, ttl_s, self._k("streams", ""), stream_id]
        owner = await self._call(self._owner(keys=[self._k("owner", stream_id)], args=args))
        return None if owner is None else bytes(owner).decode()

    async def release_stream(self, key_id: str, stream_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._k("streams", key_id), stream_id)
            pipe.delete(self._k("owner", stream_id))
            await self._call(pipe.execute())

    async def reachable(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def aclose(self) -> None:
        await self._redis.aclose()
