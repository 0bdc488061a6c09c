"""Redis JobStore: jobs in the frame buffer's Redis, so that any gateway answers for (and resumes) any job.

Keys of one job share the hash tag ``{<job_id>}`` (one Redis Cluster slot):

- ``pose3d:job:{id}:meta``   hash: the :class:`JobRecord` fields, each JSON
- ``pose3d:job:{id}:frames`` hash: position → the frame's JSON result (written once)
- ``pose3d:job:{id}:input``  list: the staged input in 1 MiB pieces (deleted when the job ends)

and ``pose3d:jobs`` (a sorted set of job ids by creation time) lists them (``pose3d:jobs:active``: those not
ended), each written after the job's own keys (in a Redis Cluster they live in other slots). Every state change is one Lua
script (atomic: a cancelled job is never revived, a lapsed lease is taken by one gateway only). Every key
expires ``ttl_s`` after the job's last change.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Final, TypeVar

from redis.exceptions import RedisError

from service.errors import Unavailable
from service.jobs.store import JobRecord, JobState, JobStore, UnknownJob, encode_fields, split_input
from service.redis_client import RedisClient, connect

_T = TypeVar("_T")

_TERMINAL: Final = (
    "local function terminal(s) return s == '\"done\"' or s == '\"failed\"' or s == '\"cancelled\"' end\n"
)

# KEYS: meta input; ARGV: ttl_ms owner_json_or_empty field value field value ...
_UPDATE: Final = (
    _TERMINAL
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local m = redis.call('HMGET', KEYS[1], 'state', 'owner')
if terminal(m[1]) or (ARGV[2] ~= '' and m[2] ~= ARGV[2]) then return {'unchanged'} end
local kv = {}
for i = 3, #ARGV do kv[#kv + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(kv))
if terminal(redis.call('HGET', KEYS[1], 'state')) then redis.call('DEL', KEYS[2]) end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1])) end
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: meta input frames; ARGV: ttl_ms owner_json now_s lease_s
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
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: meta frames; ARGV: ttl_ms start frame0 frame1 ...  -> frames_done or -1 when the job is gone
_PUT_FRAMES: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local start = tonumber(ARGV[2])
for i = 3, #ARGV do redis.call('HSETNX', KEYS[2], start + i - 3, ARGV[i]) end
local done = tonumber(redis.call('HGET', KEYS[1], 'frames_done'))
while redis.call('HEXISTS', KEYS[2], done) == 1 do done = done + 1 end
redis.call('HSET', KEYS[1], 'frames_done', tostring(done))
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1])) end
return done
"""


def _record(raw: list[Any]) -> JobRecord:
    pairs = raw[1]
    data = {_text(pairs[i]): _text(pairs[i + 1]) for i in range(0, len(pairs), 2)}
    return JobRecord.from_fields(data)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisJobStore(JobStore):
    """Jobs in Redis at ``url``; each job expires ``ttl_s`` after its last change."""

    def __init__(self, url: str, ttl_s: float, prefix: str = "pose3d") -> None:
        self._redis: RedisClient = connect(url)
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._ttl_s = ttl_s
        self._prefix = prefix
        self._update = self._redis.register_script(_UPDATE)
        self._claim = self._redis.register_script(_CLAIM)
        self._put = self._redis.register_script(_PUT_FRAMES)

    def _key(self, job_id: str, part: str) -> str:
        return f"{self._prefix}:job:{{{job_id}}}:{part}"

    async def _call(self, op: Awaitable[_T]) -> _T:
        try:
            return await op
        except RedisError as e:
            raise Unavailable(f"job store (Redis) failed: {e}", retry_after_s=1.0) from e

    async def create(self, record: JobRecord, staged_input: bytes) -> None:
        """The job's keys in one transaction (one slot), then the two lists of jobs (other slots in a Redis
        Cluster, so not in that transaction): a job is listed only once it exists."""
        meta, staged = self._key(record.job_id, "meta"), self._key(record.job_id, "input")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(meta, mapping=record.to_fields())  # type: ignore[arg-type]
            pipe.delete(staged)
            pipe.rpush(staged, *split_input(staged_input))
            pipe.pexpire(meta, self._ttl_ms)
            pipe.pexpire(staged, self._ttl_ms)
            await self._call(pipe.execute())
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(f"{self._prefix}:jobs", {record.job_id: record.created_s})
            pipe.zadd(f"{self._prefix}:jobs:active", {record.job_id: record.created_s})
            pipe.zremrangebyscore(f"{self._prefix}:jobs", "-inf", record.created_s - self._ttl_s)
            await self._call(pipe.execute())

    async def get(self, job_id: str) -> JobRecord:
        raw: dict[bytes | str, bytes | str] = await self._call(self._redis.hgetall(self._key(job_id, "meta")))
        if not raw:
            raise UnknownJob(f"job {job_id!r} does not exist or has expired")
        return JobRecord.from_fields({_text(k): _text(v) for k, v in raw.items()})

    async def update(self, job_id: str, owner: str | None = None, **changes: Any) -> JobRecord | None:
        argv: list[Any] = [self._ttl_ms, "" if owner is None else encode_fields({"o": owner})["o"]]
        for k, v in encode_fields(changes).items():
            argv += [k, v]
        keys = [self._key(job_id, "meta"), self._key(job_id, "input")]
        raw = await self._call(self._update(keys=keys, args=argv))
        if raw[0] == b"missing":
            raise UnknownJob(f"job {job_id!r} does not exist or has expired")
        if raw[0] != b"ok":
            return None
        record = _record(raw)
        if record.state.terminal:
            await self.drop_active(job_id)
        return record

    async def cancel(self, job_id: str, now_s: float) -> JobRecord:
        changed = await self.update(job_id, state=JobState.CANCELLED, finished_s=now_s)
        return changed if changed is not None else await self.get(job_id)

    async def claim(self, job_id: str, owner: str, now_s: float, lease_s: float) -> JobRecord | None:
        keys = [self._key(job_id, p) for p in ("meta", "input", "frames")]
        args: list[str | int] = [self._ttl_ms, encode_fields({"o": owner})["o"], repr(now_s), repr(lease_s)]
        raw = await self._call(self._claim(keys=keys, args=args))
        if raw[0] == b"missing":
            raise UnknownJob(f"job {job_id!r} does not exist or has expired")
        return _record(raw) if raw[0] == b"ok" else None

    async def put_frames(self, job_id: str, start: int, frames: list[bytes]) -> int:
        keys = [self._key(job_id, "meta"), self._key(job_id, "frames")]
        args: list[bytes | int] = [self._ttl_ms, start, *frames]
        done = int(await self._call(self._put(keys=keys, args=args)))
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

    async def job_ids(self, limit: int) -> list[str]:
        ids: list[Any] = await self._call(self._redis.zrevrange(f"{self._prefix}:jobs", 0, limit - 1))
        return [_text(i) for i in ids]

    async def active_ids(self) -> list[str]:
        ids: list[Any] = await self._call(self._redis.zrange(f"{self._prefix}:jobs:active", 0, -1))
        return [_text(i) for i in ids]

    async def drop_active(self, job_id: str) -> None:
        await self._call(self._redis.zrem(f"{self._prefix}:jobs:active", job_id))

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def aclose(self) -> None:
        await self._redis.aclose()
