"""The job record and the :class:`JobStore` interface.

A job is a hash of small fields (:class:`JobRecord`), its staged input (the uploaded clip or JSON body, in
chunks, so that any gateway can run or resume it), and its results: one JSON document per processed frame,
keyed by position (0, 1, 2, ... in processing order; written once, so a retried or resumed chunk never
changes a stored frame). ``frames_done`` is the count of contiguous positions stored. Who runs a job is a
lease: ``owner`` and ``lease_until`` (Unix seconds); a job whose lease lapsed is taken over by any gateway.

Every job belongs to the API key that submitted it (``key``; ``""`` when authentication is off; its id carries the
key's slot tag, :func:`new_job_id`). The store indexes each key's jobs, so they are listed without reading anyone
else's, and enforces the key's :class:`KeyJobLimits` atomically across gateways; stored bytes (staged input while
the job runs, plus every result frame) leave the count when the job expires (``jobs.ttl_s`` after its last change).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Final

from service.errors import Gone, NotFound, PayloadTooLarge, QuotaExceeded

INPUT_CHUNK_BYTES: Final = 1024 * 1024
"""Staged input is stored in pieces of this size (Redis values stay small)."""

_TAGGED_ID: Final = re.compile(r"([0-9a-f]{6})-[A-Za-z0-9_-]{16,57}")


def key_tag(key: str) -> str:
    """The slot tag of ``key``'s jobs: 6 hex digits of the key id's SHA-256 (the anonymous caller's is that of
    ``""``); stable across processes and versions, so every gateway puts one key's jobs in one place."""
    return hashlib.sha256(key.encode()).hexdigest()[:6]


def new_job_id(key: str) -> str:
    """A fresh id for a job of ``key``: ``<key_tag(key)>-<24 random URL-safe characters>`` (31 characters)."""
    return f"{key_tag(key)}-{secrets.token_urlsafe(18)}"


def job_tag(job_id: str) -> str | None:
    """The slot tag a job id carries, or None when ``job_id`` is not one :func:`new_job_id` makes."""
    found = _TAGGED_ID.fullmatch(job_id)
    return found.group(1) if found else None


class UnknownJob(NotFound):
    type_slug, title = "unknown-job", "Unknown job"


class JobResultsLost(Gone):
    """The job's record counts frames the store no longer holds (Redis evicted or expired them before the record):
    they will not come back, so this is answered at once instead of waiting or returning a shorter document."""

    type_slug, title = "job-results-lost", "Job results lost"


class JobInputLost(Gone):
    """The store lost a job's staged input before the job ended (Redis evicted it): no run can start, so the job
    fails with this instead of being claimed again after every lease."""

    type_slug, title = "job-input-lost", "Job input lost"


class JobQuotaExceeded(QuotaExceeded):
    """The submitting key holds its limit of open jobs, of stored jobs, or of stored job bytes."""

    type_slug, title = "job-quota-exceeded", "Job quota exceeded"


@dataclass(frozen=True)
class KeyJobLimits:
    """Per-key bounds on jobs (0 = no bound). The anonymous key (auth off) has none."""

    max_open: int = 0
    max_stored: int = 0
    max_bytes: int = 0

    def for_key(self, key: str) -> KeyJobLimits:
        return self if key else KeyJobLimits()

    def check_input(self, size: int) -> None:
        """PayloadTooLarge (413, no Retry-After) when a job's input of ``size`` bytes alone passes ``max_bytes``: it
        can never be stored, so it is not the retryable 429 of a full quota."""
        if self.max_bytes and size > self.max_bytes:
            raise PayloadTooLarge(f"the job's input is {size} bytes, more than its key's limit of {self.max_bytes} "
                                  "stored bytes (security.quotas.max_job_bytes): it can never be stored")  # fmt: skip


@dataclass(frozen=True)
class KeyUsage:
    """What one key holds in the store: jobs not ended, jobs stored, bytes stored."""

    open: int = 0
    stored: int = 0
    bytes: int = 0

    def refusal(self, limits: KeyJobLimits, adding: int) -> str | None:
        """Why a new job of ``adding`` bytes is refused, or None."""
        if limits.max_open and self.open >= limits.max_open:
            return f"this key has {self.open} open jobs (its limit); wait for one to end or cancel one"
        if limits.max_stored and self.stored >= limits.max_stored:
            return f"this key stores {self.stored} jobs (its limit); they expire after jobs.ttl_s"
        if limits.max_bytes and self.bytes + adding > limits.max_bytes:
            return (f"this key stores {self.bytes} bytes of jobs; {adding} more would pass its limit of "
                    f"{limits.max_bytes} (results expire after jobs.ttl_s)")  # fmt: skip
        return None

    def retry_after_s(self, limits: KeyJobLimits, first_expiry_s: float) -> float:
        """When a refusal may clear: a full stored-job count only once a stored job expires, ``first_expiry_s`` (the
        soonest of them) from now; anything else when a job ends, which no one knows: 1 s."""
        stored_full = bool(limits.max_stored) and self.stored >= limits.max_stored
        return max(1.0, first_expiry_s) if stored_full else 1.0


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobRecord:
    """A job's state. ``params``: what the job was submitted with (kind-specific, JSON-serialisable);
    ``model``: the model reference of the results; times are Unix seconds; ``error``: a problem document."""

    job_id: str
    kind: str  # "clip" | "keypoints"
    request_id: str
    created_s: float
    params: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    box_source: str = ""
    state: JobState = JobState.QUEUED
    frames_total: int | None = None
    frames_done: int = 0
    started_s: float | None = None
    finished_s: float | None = None
    run_started_s: float | None = None
    run_start_done: int = 0
    error: dict[str, Any] | None = None
    owner: str = ""
    lease_until: float = 0.0
    attempts: int = 0
    handovers: int = 0
    stream_id: str = ""  # the engine stream its runs push into, once a run opened one other than job-<id>
    stream_lost: bool = False  # that stream lost its stored frames: the next run opens a new one
    key: str = ""
    input_bytes: int = 0
    result_bytes: int = 0

    @property
    def counted_attempts(self) -> int:
        """Runs that count against the job's limit: every claim (``attempts``) but those its gateway handed back
        when it stopped gracefully (``handovers``): a rolling restart is no failed run, a crash or a lapsed lease is."""
        return self.attempts - self.handovers

    @property
    def stored_bytes(self) -> int:
        """Bytes this job holds in the store: its results, and its staged input until it ends."""
        return self.result_bytes + (0 if self.state.terminal else self.input_bytes)

    def to_fields(self) -> dict[str, str]:
        """Every field as a string (JSON), for a hash."""
        return encode_fields(asdict(self))

    @classmethod
    def from_fields(cls, data: dict[str, str]) -> JobRecord:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: json.loads(v) for k, v in data.items() if k in known}
        values["state"] = JobState(values.get("state", "queued"))
        return cls(**values)

    def with_(self, **changes: Any) -> JobRecord:
        return replace(self, **changes)


def encode_fields(changes: dict[str, Any]) -> dict[str, str]:
    """Changed fields as the strings a hash stores (see :meth:`JobRecord.to_fields`)."""
    return {k: json.dumps(v.value if isinstance(v, StrEnum) else v) for k, v in changes.items()}


def split_input(data: bytes) -> list[bytes]:
    return [data[i : i + INPUT_CHUNK_BYTES] for i in range(0, len(data), INPUT_CHUNK_BYTES)] or [b""]


class JobStore(ABC):
    """Where jobs live. Safe to use from many processes (Redis) or tasks (memory). Storage failures raise
    :class:`~service.errors.Unavailable` (503 + Retry-After); an unknown or expired job :class:`UnknownJob`."""

    @abstractmethod
    async def create(self, record: JobRecord, staged_input: bytes) -> None:
        """Store a new job and its input (``record.key``'s limits permitting, else :class:`JobQuotaExceeded`);
        both expire after the store's TTL."""

    @abstractmethod
    async def get(self, job_id: str) -> JobRecord:
        """The job (raises UnknownJob)."""

    @abstractmethod
    async def update(self, job_id: str, owner: str | None = None, **changes: Any) -> JobRecord | None:
        """Set ``changes`` on a job that is not in a terminal state (and, when ``owner`` is given, still held by
        it); returns the job after the change, or None when nothing changed (terminal, or lease lost).
        Raises UnknownJob."""

    async def cancel(self, job_id: str, now_s: float) -> JobRecord:
        """Mark a job cancelled (unless terminal) and drop its staged input; returns the job."""
        changed = await self.update(job_id, state=JobState.CANCELLED, finished_s=now_s)
        return changed if changed is not None else await self.get(job_id)

    @abstractmethod
    async def claim(self, job_id: str, owner: str, now_s: float, lease_s: float) -> JobRecord | None:
        """Take a queued or running job whose lease is free, lapsed, or already ``owner``'s; returns it with
        the new lease (``attempts`` counted) or None."""

    @abstractmethod
    async def put_frames(self, job_id: str, start: int, frames: list[bytes]) -> int:
        """Store frames at positions ``start, start + 1, ...`` (a position already stored keeps its first
        value); returns ``frames_done`` afterwards (the contiguous stored count). :class:`JobQuotaExceeded` when
        the job's key would pass its stored-bytes limit (nothing is stored then)."""

    @abstractmethod
    async def read_frames(self, job_id: str, start: int, stop: int) -> list[bytes]:
        """The stored frames at positions ``[start, stop)`` (a missing position ends the list)."""

    @abstractmethod
    async def read_input(self, job_id: str) -> bytes:
        """The staged input (raises UnknownJob when it is gone)."""

    @abstractmethod
    async def job_ids(self, limit: int, key: str) -> list[str]:
        """Ids of ``key``'s newest jobs still stored, newest first."""

    @abstractmethod
    async def active_ids(self) -> list[str]:
        """Ids of jobs not known to have ended, oldest first (may include expired ones: :meth:`get` says)."""

    async def drop_active(self, job_id: str) -> None:  # noqa: B027 — optional hook
        """Stop listing ``job_id`` as active (it ended or expired)."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the store answers."""

    async def aclose(self) -> None:  # noqa: B027 — optional hook
        """Release connections."""
