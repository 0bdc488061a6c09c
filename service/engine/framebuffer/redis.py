"""Redis FrameBuffer (redis-py asyncio, hiredis parser when installed): stream state that survives the worker.

Keys of one stream share the hash tag ``{<stream_id>}`` (one Redis Cluster slot):

- ``pose3d:{sid}:meta``    hash: ``meta`` (JSON of :class:`StreamMeta`), ``cursor``, ``high``, ``maxi``,
  ``received``, ``trim``, ``closed``, ``tver`` (tracker version)
- ``pose3d:{sid}:frames``  hash: frame index → binary :class:`FrameRecord` (:func:`encode_record`)
- ``pose3d:{sid}:emits``   hash: frame index → ``start,stop,newest`` (what that frame's arrival emitted)
- ``pose3d:{sid}:tracker`` string: the tracker's serialised state

Append, cursor advance, window read and trimming happen in one Lua script (atomic, one round trip); it
mirrors :func:`service.engine.windows.emission_range` and :func:`~service.engine.windows.needed_range`.
Every touch refreshes the TTL of all four keys.
"""

from __future__ import annotations

from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.engine.framebuffer.base import (
    REPLAY_MARGIN,
    AppendStatus,
    Emission,
    FrameBuffer,
    FrameRecord,
    StreamMeta,
    StreamState,
    TrackerSnapshot,
    decode_record,
    encode_record,
)
from service.engine.types import WindowMode
from service.engine.windows import WindowSpec
from service.errors import Conflict, Unavailable, UnknownStream

# Shared Lua helpers: read counters, compute the needed frame range, read it, refresh TTLs.
_LUA_COMMON: Final = """
local function counters()
  local m = redis.call('HMGET', KEYS[1], 'cursor', 'high', 'maxi', 'received', 'trim', 'closed', 'tver')
  local c = {}
  for i = 1, 7 do c[i] = tonumber(m[i]) end
  return c
end
local function touch(ttl)
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
end
-- frames lo..hi that the windows of targets [start, stop) may use; {} when there are no targets
local function needed(start, stop, newest, lag_left, lag_right, causal)
  if stop <= start then return -1, -2 end
  local lo = math.max(0, start - lag_left)
  local hi
  if causal then hi = stop - 1 else hi = math.min(newest, stop - 1 + lag_right) end
  return lo, hi
end
local function read(lo, hi)
  if hi < lo then return {} end
  local fields = {}
  for i = lo, hi do fields[#fields + 1] = i end
  return redis.call('HMGET', KEYS[2], unpack(fields))
end
"""

# KEYS: meta frames emits tracker
# ARGV: index record tracker_or_empty expected_tver(-1 = no check) lag_left lag_right causal ttl_ms margin
# returns {status, cursor, high, maxi, received, closed, start, stop, newest, lo, {records}}
_APPEND: Final = (
    _LUA_COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local c = counters()
local cursor, high, maxi, received, trim, closed, tver = c[1], c[2], c[3], c[4], c[5], c[6], c[7]
if closed == 1 then return {'closed'} end
local idx = tonumber(ARGV[1])
local lag_left, lag_right = tonumber(ARGV[5]), tonumber(ARGV[6])
local causal = ARGV[7] == '1'
local ttl = tonumber(ARGV[8])
if idx < trim or redis.call('HEXISTS', KEYS[2], idx) == 1 then
  local e = redis.call('HGET', KEYS[3], idx)
  local start, stop, newest = 0, 0, -1
  if e then
    local a, b, n = string.match(e, '(-?%d+),(-?%d+),(-?%d+)')
    start, stop, newest = tonumber(a), tonumber(b), tonumber(n)
  end
  local lo, hi = needed(start, stop, newest, lag_left, lag_right, causal)
  if stop > start and lo < trim then start, stop, lo, hi = 0, 0, -1, -2 end
  touch(ttl)
  return {'duplicate', cursor, high, maxi, received, closed, start, stop, newest, lo, read(lo, hi)}
end
if ARGV[3] ~= '' and tonumber(ARGV[4]) >= 0 and tonumber(ARGV[4]) ~= tver then return {'conflict'} end
redis.call('HSET', KEYS[2], idx, ARGV[2])
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[4], ARGV[3])
  tver = tver + 1
end
received = received + 1
if idx > maxi then maxi = idx end
while redis.call('HEXISTS', KEYS[2], high + 1) == 1 do high = high + 1 end
local last = high
if not causal then last = high - lag_right end
local start = cursor
local stop = math.max(cursor, last + 1)
redis.call('HSET', KEYS[3], idx, start .. ',' .. stop .. ',' .. high)
cursor = stop
local lo, hi = needed(start, stop, high, lag_left, lag_right, causal)
local records = read(lo, hi)
-- keep the last `margin` targets' frames and the whole latest emission's, so its frame can be retried
local keep_from = math.min(start, cursor - tonumber(ARGV[9])) - lag_left
while trim < keep_from do
  redis.call('HDEL', KEYS[2], trim)
  redis.call('HDEL', KEYS[3], trim)
  trim = trim + 1
end
redis.call('HSET', KEYS[1], 'cursor', cursor, 'high', high, 'maxi', maxi, 'received', received,
  'trim', trim, 'tver', tver)
touch(ttl)
return {'added', cursor, high, maxi, received, closed, start, stop, high, lo, records}
"""
)

# KEYS: meta frames emits tracker; ARGV: lag_left lag_right causal ttl_ms
_FLUSH: Final = (
    _LUA_COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local c = counters()
local cursor, high, maxi, received = c[1], c[2], c[3], c[4]
redis.call('HSET', KEYS[1], 'closed', 1)
local start = cursor
local stop = math.max(cursor, maxi + 1)
local lo, hi = needed(start, stop, maxi, tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1')
touch(tonumber(ARGV[4]))
return {'added', cursor, high, maxi, received, 1, start, stop, maxi, lo, read(lo, hi)}
"""
)

# KEYS: meta frames emits tracker; ARGV: meta_json ttl_ms
_CREATE: Final = """
if redis.call('HSETNX', KEYS[1], 'meta', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'cursor', 0, 'high', -1, 'maxi', -1, 'received', 0, 'trim', 0, 'closed', 0, 'tver', 0)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""


def stream_keys(stream_id: str, prefix: str = "pose3d") -> list[str]:
    """The four keys of a stream, hash-tagged on the stream id: meta, frames, emits, tracker."""
    base = f"{prefix}:{{{stream_id}}}"
    return [f"{base}:meta", f"{base}:frames", f"{base}:emits", f"{base}:tracker"]


class RedisFrameBuffer(FrameBuffer):
    """Frame buffer in Redis; any worker attached to the same Redis continues any stream.

    Args:
        url: ``redis://host:port/db``.
        ttl_s: idle streams expire after this (every touch refreshes it).
        prefix: key namespace.
    """

    kind = "redis"
    shared = True

    def __init__(self, url: str, ttl_s: float = 300.0, prefix: str = "pose3d") -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=False)
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.prefix = prefix
        self._append = self._redis.register_script(_APPEND)
        self._flush = self._redis.register_script(_FLUSH)
        self._create = self._redis.register_script(_CREATE)

    def _keys(self, stream_id: str) -> list[str]:
        return stream_keys(stream_id, self.prefix)

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except RedisError as e:
            raise Unavailable(f"frame buffer (Redis) failed: {e}") from e

    async def create(self, meta: StreamMeta) -> StreamState:
        created = await self._call(self._create, self._keys(meta.stream_id), [meta.to_json(), self.ttl_ms])
        if not created:
            existing = await self.state(meta.stream_id)
            if existing.meta == meta and not existing.closed:
                return existing  # an open retried on another worker (its first reply was lost): idempotent
            raise Conflict(f"stream {meta.stream_id!r} already exists with other options")
        return StreamState(meta)

    async def state(self, stream_id: str) -> StreamState:
        keys = self._keys(stream_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(keys[0])
                for key in keys:
                    pipe.pexpire(key, self.ttl_ms)
                raw, *_ = await pipe.execute()
        except RedisError as e:
            raise Unavailable(f"frame buffer (Redis) failed: {e}") from e
        if not raw:
            raise UnknownStream(f"stream {stream_id!r} does not exist or has expired")
        return self._state(raw)

    @staticmethod
    def _state(raw: dict[bytes, bytes]) -> StreamState:
        def num(name: str) -> int:
            return int(raw[name.encode()])

        return StreamState(
            StreamMeta.from_json(raw[b"meta"]),
            frames_received=num("received"),
            next_emit=num("cursor"),
            contiguous_high=num("high"),
            max_index=num("maxi"),
            closed=bool(num("closed")),
        )

    async def read_tracker(self, stream_id: str, frame_index: int) -> TrackerSnapshot:
        keys = self._keys(stream_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(keys[0])
                pipe.get(keys[3])
                pipe.hexists(keys[1], str(frame_index))
                for key in keys:
                    pipe.pexpire(key, self.ttl_ms)
                raw, tracker, present, *_ = await pipe.execute()
        except RedisError as e:
            raise Unavailable(f"frame buffer (Redis) failed: {e}") from e
        if not raw:
            raise UnknownStream(f"stream {stream_id!r} does not exist or has expired")
        present = bool(present) or frame_index < int(raw[b"trim"])
        return TrackerSnapshot(self._state(raw), tracker, int(raw[b"tver"]), present)

    def _emission(self, reply: list[Any], stream_id: str) -> Emission:
        status = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if status == "missing":
            raise UnknownStream(f"stream {stream_id!r} does not exist or has expired")
        if status == "closed":
            raise Conflict(f"stream {stream_id!r} is closed")
        if status == "conflict":
            return Emission(AppendStatus.CONFLICT)
        _, cursor, _high, _maxi, received, _closed, start, stop, newest, lo, values = reply
        records = {lo + i: decode_record(v) for i, v in enumerate(values) if v is not None}
        targets = range(int(start), int(stop))
        return Emission(AppendStatus(status), targets, int(newest), records, int(received), int(cursor))

    async def append(
        self,
        stream_id: str,
        record: FrameRecord,
        window: WindowSpec,
        mode: WindowMode,
        tracker: bytes | None = None,
        tracker_version: int | None = None,
    ) -> Emission:
        causal = mode is WindowMode.CAUSAL
        args = [
            record.frame_index,
            encode_record(record),
            tracker if tracker is not None else b"",
            -1 if tracker_version is None else tracker_version,
            window.lag_left,
            window.lag_right,
            "1" if causal else "0",
            self.ttl_ms,
            REPLAY_MARGIN,
        ]
        reply = await self._call(self._append, self._keys(stream_id), args)
        return self._emission(reply, stream_id)

    async def flush(self, stream_id: str, window: WindowSpec, mode: WindowMode) -> Emission:
        args = [window.lag_left, window.lag_right, "1" if mode is WindowMode.CAUSAL else "0", self.ttl_ms]
        reply = await self._call(self._flush, self._keys(stream_id), args)
        return self._emission(reply, stream_id)

    async def delete(self, stream_id: str) -> bool:
        try:
            return bool(await self._redis.delete(*self._keys(stream_id)))
        except RedisError as e:
            raise Unavailable(f"frame buffer (Redis) failed: {e}") from e

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def count(self) -> int:
        n = 0
        async for _ in self._redis.scan_iter(match=f"{self.prefix}:*:meta", count=1000):
            n += 1
        return n

    async def aclose(self) -> None:
        await self._redis.aclose()
