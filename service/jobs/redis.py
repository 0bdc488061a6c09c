"""Redis JobStore: jobs in the frame buffer's Redis, so that any gateway answers for (and resumes) any job.

All keys of one API key's jobs share its slot tag ``t`` (:func:`~service.jobs.store.key_tag`, the prefix of every
job id ``t-<random>``), so that they live in one Redis Cluster slot (docs/deployment.md, "Redis Cluster"):

- ``pose3d:job:{t}:<id>:meta``   hash: the :class:`JobRecord` fields, each JSON
- ``pose3d:job:{t}:<id>:frames`` hash: position → the frame's JSON result (written once)
- ``pose3d:job:{t}:<id>:input``  list: the staged input in 1 MiB pieces (deleted when the job ends)
- ``pose3d:jobs:key:{t}:<key id>`` sorted set of the key's job ids by creation time (pruned of expired ones
  whenever its usage is counted, so it holds at most the key's stored-job limit; it expires with the key's last job).

Every state change is one Lua script (atomic: a cancelled job is never revived, a lapsed lease is taken by one
gateway only, a key's limits hold across gateways, reading the key's other jobs in the same slot). Only
``pose3d:jobs:active`` (ids of jobs not ended, for the runners) is global, written outside the scripts. Every key
expires ``ttl_s`` after the job's last change. An id without a slot tag is an unknown job.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from itertools import chain
from typing import Any, Final, TypeVar

from redis.exceptions import RedisError

from service.errors import Unavailable
from service.jobs.store import (
    JobQuotaExceeded,
    JobRecord,
    JobStore,
    KeyJobLimits,
    KeyUsage,
    UnknownJob,
    encode_fields,
    job_tag,
    key_tag,
    split_input,
)
from service.redis_client import RedisClient, connect

_T = TypeVar("_T")

_TERMINAL: Final = (
    "local function terminal(s) return s == '\"done\"' or s == '\"failed\"' or s == '\"cancelled\"' end\n"
    # the index of the job's API key (``index_prefix`` + its key id) expires no sooner than the job (ttl ``ms``)
    "local function renew_index(meta, index_prefix, ms)\n"
    "  local key = redis.call('HGET', meta, 'key')\n"
    "  if not key then return end\n"
    "  local idx = index_prefix .. cjson.decode(key)\n"
    "  if redis.call('PTTL', idx) < ms then redis.call('PEXPIRE', idx, ms) end\n"
    "end\n"
)

# KEYS: meta input frames (all three expire together); ARGV: ttl_ms owner_json_or_empty index_prefix field value ...
_UPDATE: Final = (
    _TERMINAL
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local m = redis.call('HMGET', KEYS[1], 'state', 'owner')
if terminal(m[1]) or (ARGV[2] ~= '' and m[2] ~= ARGV[2]) then return {'unchanged'} end
local kv = {}
for i = 4, #ARGV do kv[#kv + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(kv))
if terminal(redis.call('HGET', KEYS[1], 'state')) then redis.call('DEL', KEYS[2]) end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1])) end
renew_index(KEYS[1], ARGV[3], tonumber(ARGV[1]))
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: meta input frames; ARGV: ttl_ms owner_json now_s lease_s index_prefix
_CLAIM: Final = (
    _TERMINAL
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local m = redis.call('HMGET', KEYS[1], 'state', 'owner', 'lease_until', 'attempts')
local now = tonumber(ARGV[3])
if terminal(m[1]) then return {'unchanged'} end
if m[2] ~= '""' and m[2] ~= ARGV[2] and tonumber(m[3]) > now then return {'unchanged'} end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'lease_until', tostring(now + tonumber(ARGV[4])),
  'attempts', tostring(tonumber(m[4]) + 1))
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1])) end
renew_index(KEYS[1], ARGV[5], tonumber(ARGV[1]))
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)

# usage(index, meta key prefix, meta key suffix) -> open, stored, bytes of one API key (expired jobs pruned)
_USAGE: Final = (
    _TERMINAL
    + """
local function usage(idx, pre, suf)
  local open, stored, bytes = 0, 0, 0
  for _, id in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    local m = redis.call('HMGET', pre .. id .. suf, 'state', 'input_bytes', 'result_bytes')
    if not m[1] then redis.call('ZREM', idx, id) else
      stored = stored + 1
      bytes = bytes + (tonumber(m[3]) or 0)
      if not terminal(m[1]) then open = open + 1; bytes = bytes + (tonumber(m[2]) or 0) end
    end
  end
  return open, stored, bytes
end
"""
)

# KEYS: meta index; ARGV: ttl_ms created_s job_id max_open max_stored max_bytes adding pre suf field value ...
_CREATE: Final = (
    _USAGE
    + """
local open, stored, bytes = usage(KEYS[2], ARGV[8], ARGV[9])
local o, s, b, adding = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if (o > 0 and open >= o) or (s > 0 and stored >= s) or (b > 0 and bytes + adding > b) then
  local first = -1  -- ms until the first of the key's stored jobs expires (when their count is full)
  if s > 0 and stored >= s then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
      local t = redis.call('PTTL', ARGV[8] .. id .. ARGV[9])
      if t > 0 and (first < 0 or t < first) then first = t end
    end
  end
  return {'refused', open, stored, bytes, first}
end
local kv = {}
for i = 10, #ARGV do kv[#kv + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(kv))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), ARGV[3])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[1])) end
return {'ok'}
"""
)

# KEYS: meta frames; ARGV: ttl_ms start max_bytes index_prefix pre suf frame0 frame1 ...
# -> frames_done, -1 when the job is gone, -2 when its key would pass max_bytes
_PUT_FRAMES: Final = (
    _USAGE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local start, limit, adding = tonumber(ARGV[2]), tonumber(ARGV[3]), 0
for i = 7, #ARGV do
  if redis.call('HEXISTS', KEYS[2], start + i - 7) == 0 then adding = adding + #ARGV[i] end
end
local key = redis.call('HGET', KEYS[1], 'key')
if limit > 0 and adding > 0 and key and key ~= '""' then
  local _, _, bytes = usage(ARGV[4] .. string.sub(key, 2, -2), ARGV[5], ARGV[6])
  if bytes + adding > limit then return -2 end
end
for i = 7, #ARGV do redis.call('HSETNX', KEYS[2], start + i - 7, ARGV[i]) end
redis.call('HINCRBY', KEYS[1], 'result_bytes', adding)
local done = tonumber(redis.call('HGET', KEYS[1], 'frames_done'))
while redis.call('HEXISTS', KEYS[2], done) == 1 do done = done + 1 end
redis.call('HSET', KEYS[1], 'frames_done', tostring(done))
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1])) end
renew_index(KEYS[1], ARGV[4], tonumber(ARGV[1]))
return done
"""
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisJobStore(JobStore):
    """Jobs in Redis at ``url``; each job expires ``ttl_s`` after its last change."""

    def __init__(self, url: str, ttl_s: float, prefix: str = "pose3d", limits: KeyJobLimits | None = None) -> None:
        self._redis: RedisClient = connect(url)
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._prefix = prefix
        self._active = f"{prefix}:jobs:active"
        self._limits = limits or KeyJobLimits()
        self._create = self._redis.register_script(_CREATE)
        self._update = self._redis.register_script(_UPDATE)
        self._claim = self._redis.register_script(_CLAIM)
        self._put = self._redis.register_script(_PUT_FRAMES)

    def _tag(self, job_id: str) -> str:
        tag = job_tag(job_id)
        if tag is None:
            raise UnknownJob(f"job {job_id!r} does not exist (not an id POST /v1/jobs gives)")
        return tag

    def _key(self, job_id: str, part: str) -> str:
        return f"{self._prefix}:job:{{{self._tag(job_id)}}}:{job_id}:{part}"

    def _index_prefix(self, tag: str) -> str:
        return f"{self._prefix}:jobs:key:{{{tag}}}:"

    def _index(self, key: str) -> str:
        return self._index_prefix(key_tag(key)) + key

    def _meta_parts(self, tag: str) -> list[str]:
        """The prefix and suffix that make a job id of slot tag ``tag`` the name of its meta hash (for the Lua
        scripts: they compute the names of a key's other jobs, all of the same tag)."""
        return [f"{self._prefix}:job:{{{tag}}}:", ":meta"]

    async def _call(self, op: Awaitable[_T]) -> _T:
        try:
            return await op
        except RedisError as e:
            raise Unavailable(f"job store (Redis) failed: {e}", retry_after_s=1.0) from e

    async def create(self, record: JobRecord, staged_input: bytes) -> None:
        """The meta record first (one script: the key's limits are checked and the job indexed atomically), then
        the staged input; only then is the job listed as active, so no runner claims it before its input exists. A failure
        after the record removes it (best effort): the caller is refused, so the job must not hold the key's quota."""
        record = record.with_(input_bytes=len(staged_input))
        tag = key_tag(record.key)
        if job_tag(record.job_id) != tag:
            raise ValueError(f"job id {record.job_id!r} is not one of new_job_id({record.key!r})")
        meta, staged = self._key(record.job_id, "meta"), self._key(record.job_id, "input")
        limits = self._limits.for_key(record.key)
        limits.check_input(len(staged_input))
        argv: list[Any] = [self._ttl_ms, record.created_s, record.job_id, limits.max_open, limits.max_stored,
                           limits.max_bytes, len(staged_input), *self._meta_parts(tag),
                           *chain.from_iterable(record.to_fields().items())]  # fmt: skip
        raw = await self._call(self._create(keys=[meta, self._index(record.key)], args=argv))
        if raw[0] == b"refused":
            usage = KeyUsage(open=int(raw[1]), stored=int(raw[2]), bytes=int(raw[3]))
            why = usage.refusal(limits, len(staged_input)) or "this key's job limits are reached"
            raise JobQuotaExceeded(why, retry_after_s=usage.retry_after_s(limits, int(raw[4]) / 1000.0))
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(staged)
                pipe.rpush(staged, *split_input(staged_input))
                pipe.pexpire(staged, self._ttl_ms)
                await self._call(pipe.execute())
            await self._call(self._redis.zadd(self._active, {record.job_id: record.created_s}))
        except Unavailable:  # the caller is answered 503: a record left behind would hold the key's quota unrun
            with contextlib.suppress(RedisError):
                await self._redis.delete(meta, staged)
                await self._redis.zrem(self._index(record.key), record.job_id)
            raise

    async def get(self, job_id: str) -> JobRecord:
        raw: dict[bytes | str, bytes | str] = await self._call(self._redis.hgetall(self._key(job_id, "meta")))
        if not raw:
            raise UnknownJob(f"job {job_id!r} does not exist or has expired")
        return JobRecord.from_fields({_text(k): _text(v) for k, v in raw.items()})

    async def update(self, job_id: str, owner: str | None = None, **changes: Any) -> JobRecord | None:
        argv: list[Any] = [self._ttl_ms, "" if owner is None else encode_fields({"o": owner})["o"],
                           self._index_prefix(self._tag(job_id)),
                           *chain.from_iterable(encode_fields(changes).items())]  # fmt: skip
        record = await self._change(self._update, job_id, ["meta", "input", "frames"], argv)
        if record is not None and record.state.terminal:
            await self.drop_active(job_id)
        return record

    async def claim(self, job_id: str, owner: str, now_s: float, lease_s: float) -> JobRecord | None:
        args: list[Any] = [self._ttl_ms, encode_fields({"o": owner})["o"], repr(now_s), repr(lease_s),
                           self._index_prefix(self._tag(job_id))]  # fmt: skip
        return await self._change(self._claim, job_id, ["meta", "input", "frames"], args)

    async def _change(self, script: Any, job_id: str, parts: list[str], args: list[Any]) -> JobRecord | None:
        """Run a state-change script (_UPDATE, _CLAIM) on the job's ``parts`` keys: the record after it, or None when
        it changed nothing; UnknownJob when the job is gone."""
        raw = await self._call(script(keys=[self._key(job_id, p) for p in parts], args=args))
        if raw[0] == b"missing":
            raise UnknownJob(f"job {job_id!r} does not exist or has expired")
        if raw[0] != b"ok":
            return None
        pairs = raw[1]
        return JobRecord.from_fields({_text(pairs[i]): _text(pairs[i + 1]) for i in range(0, len(pairs), 2)})

    async def put_frames(self, job_id: str, start: int, frames: list[bytes]) -> int:
        keys = [self._key(job_id, "meta"), self._key(job_id, "frames")]
        limit, tag = self._limits.max_bytes, self._tag(job_id)
        args: list[bytes | int | str] = [self._ttl_ms, start, limit, self._index_prefix(tag), *self._meta_parts(tag),
                                         *frames]  # fmt: skip
        done = int(await self._call(self._put(keys=keys, args=args)))
        if done == -2:
            raise JobQuotaExceeded(f"the job's results would pass its key's limit of {limit} stored bytes")
        if done < 0:
            raise UnknownJob(f"job {job_id!r} does not exist or has expired")
        return done

    async def read_frames(self, job_id: str, start: int, stop: int) -> list[bytes]:
        if stop <= start:
            return []
        positions = list(range(max(0, start), stop))
        values: list[bytes | None] = await self._call(
            self._redis.hmget(self._key(job_id, "frames"), positions)  # type: ignore[arg-type]
        )
        out: list[bytes] = []
        for value in values:
            if value is None:
                break
            out.append(value)
        return out

    async def read_input(self, job_id: str) -> bytes:
        pieces: list[Any] = await self._call(self._redis.lrange(self._key(job_id, "input"), 0, -1))
        if not pieces:
            raise UnknownJob(f"job {job_id!r} has no staged input any more (it ended or expired)")
        return b"".join(bytes(p) for p in pieces)

    async def job_ids(self, limit: int, key: str) -> list[str]:
        ids: list[Any] = await self._call(self._redis.zrevrange(self._index(key), 0, limit - 1))
        return [_text(i) for i in ids]

    async def active_ids(self) -> list[str]:
        ids: list[Any] = await self._call(self._redis.zrange(self._active, 0, -1))
        return [_text(i) for i in ids]

    async def drop_active(self, job_id: str) -> None:
        await self._call(self._redis.zrem(self._active, job_id))

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def aclose(self) -> None:
        await self._redis.aclose()
