"""In-memory JobStore for the embedded service (one process; jobs end with it)."""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from service.jobs.store import JobQuotaExceeded, JobRecord, JobStore, KeyJobLimits, KeyUsage, UnknownJob


@dataclass
class _Entry:
    record: JobRecord
    staged: bytes | None
    frames: dict[int, bytes] = field(default_factory=dict)
    expires: float = 0.0


class MemoryJobStore(JobStore):
    """Jobs in a dict, expiring ``ttl_s`` after their last change (``clock``: monotonic seconds)."""

    def __init__(self, ttl_s: float, clock: Any = time.monotonic, limits: KeyJobLimits | None = None) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._limits = limits or KeyJobLimits()
        self._jobs: OrderedDict[str, _Entry] = OrderedDict()

    def _usage(self, key: str) -> KeyUsage:
        mine = [e.record for e in self._jobs.values() if e.record.key == key]
        return KeyUsage(
            open=sum(not r.state.terminal for r in mine), stored=len(mine), bytes=sum(r.stored_bytes for r in mine)
        )

    def _entry(self, job_id: str) -> _Entry:
        self._expire()
        entry = self._jobs.get(job_id)
        if entry is None:
            raise UnknownJob(f"job {job_id!r} does not exist or has expired")
        return entry

    def _changed(self, entry: _Entry) -> _Entry:
        """``entry``, which the caller changes: it expires ``ttl_s`` from now (a read does not renew it)."""
        entry.expires = self._clock() + self._ttl_s
        return entry

    def _expire(self) -> None:
        now = self._clock()
        for job_id in [k for k, e in self._jobs.items() if e.expires <= now]:
            del self._jobs[job_id]

    async def create(self, record: JobRecord, staged_input: bytes) -> None:
        self._expire()
        limits = self._limits.for_key(record.key)
        limits.check_input(len(staged_input))
        usage = self._usage(record.key)
        why = usage.refusal(limits, len(staged_input))
        if why is not None:
            first_expiry = min((e.expires for e in self._jobs.values() if e.record.key == record.key), default=0.0)
            raise JobQuotaExceeded(why, retry_after_s=usage.retry_after_s(limits, first_expiry - self._clock()))
        record = record.with_(input_bytes=len(staged_input))
        self._jobs[record.job_id] = _Entry(record, staged_input, expires=self._clock() + self._ttl_s)

    async def get(self, job_id: str) -> JobRecord:
        return self._entry(job_id).record

    async def update(self, job_id: str, owner: str | None = None, **changes: Any) -> JobRecord | None:
        entry = self._entry(job_id)
        if entry.record.state.terminal or (owner is not None and entry.record.owner != owner):
            return None
        self._changed(entry).record = entry.record.with_(**changes)
        if entry.record.state.terminal:
            entry.staged = None
        return entry.record

    async def claim(self, job_id: str, owner: str, now_s: float, lease_s: float) -> JobRecord | None:
        entry = self._entry(job_id)
        rec = entry.record
        if rec.state.terminal or (rec.owner not in ("", owner) and rec.lease_until > now_s):
            return None
        self._changed(entry).record = rec.with_(owner=owner, lease_until=now_s + lease_s, attempts=rec.attempts + 1)
        return entry.record

    async def put_frames(self, job_id: str, start: int, frames: list[bytes]) -> int:
        entry = self._changed(self._entry(job_id))
        new = {start + i: frame for i, frame in enumerate(frames) if start + i not in entry.frames}
        adding = sum(len(f) for f in new.values())
        limit = self._limits.for_key(entry.record.key).max_bytes
        if limit and new and self._usage(entry.record.key).bytes + adding > limit:
            raise JobQuotaExceeded(f"the job's results would pass its key's limit of {limit} stored bytes")
        entry.frames.update(new)
        done = entry.record.frames_done
        while done in entry.frames:
            done += 1
        entry.record = entry.record.with_(frames_done=done, result_bytes=entry.record.result_bytes + adding)
        return done

    async def read_frames(self, job_id: str, start: int, stop: int) -> list[bytes]:
        frames = self._entry(job_id).frames
        return [frames[p] for p in itertools.takewhile(frames.__contains__, range(max(0, start), stop))]

    async def read_input(self, job_id: str) -> bytes:
        staged = self._entry(job_id).staged
        if staged is None:
            raise UnknownJob(f"job {job_id!r} has no staged input any more (it ended)")
        return staged

    async def job_ids(self, limit: int, key: str) -> list[str]:
        self._expire()
        return [k for k in reversed(self._jobs) if self._jobs[k].record.key == key][:limit]

    async def active_ids(self) -> list[str]:
        self._expire()
        return [k for k, e in self._jobs.items() if not e.record.state.terminal]

    async def ping(self) -> bool:
        return True
