"""The job record and the :class:`JobStore` interface.

A job is a hash of small fields (:class:`JobRecord`), its staged input (the uploaded clip or JSON body, in
chunks, so that any gateway can run or resume it), and its results: one JSON document per processed frame,
keyed by position (0, 1, 2, ... in processing order; written once, so a retried or resumed chunk never
changes a stored frame). ``frames_done`` is the count of contiguous positions stored. Who runs a job is a
lease: ``owner`` and ``lease_until`` (Unix seconds); a job whose lease lapsed is taken over by any gateway.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Final

from service.errors import NotFound

INPUT_CHUNK_BYTES: Final = 1024 * 1024
"""Staged input is stored in pieces of this size (Redis values stay small)."""


class UnknownJob(NotFound):
    type_slug, title = "unknown-job", "Unknown job"


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

    def to_fields(self) -> dict[str, str]:
        """Every field as a string (JSON), for a hash."""
        return {k: json.dumps(v) for k, v in asdict(self).items()}

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
        """Store a new job and its input; both expire after the store's TTL."""

    @abstractmethod
    async def get(self, job_id: str) -> JobRecord:
        """The job (raises UnknownJob)."""

    @abstractmethod
    async def update(self, job_id: str, owner: str | None = None, **changes: Any) -> JobRecord | None:
        """Set ``changes`` on a job that is not in a terminal state (and, when ``owner`` is given, still held by
        it); returns the job after the change, or None when nothing changed (terminal, or lease lost).
        Raises UnknownJob."""

    @abstractmethod
    async def cancel(self, job_id: str, now_s: float) -> JobRecord:
        """Mark a job cancelled (unless terminal) and drop its staged input; returns the job."""

    @abstractmethod
    async def claim(self, job_id: str, owner: str, now_s: float, lease_s: float) -> JobRecord | None:
        """Take a queued or running job whose lease is free, lapsed, or already ``owner``'s; returns it with
        the new lease (``attempts`` counted) or None."""

    @abstractmethod
    async def put_frames(self, job_id: str, start: int, frames: list[bytes]) -> int:
        """Store frames at positions ``start, start + 1, ...`` (a position already stored keeps its first
        value); returns ``frames_done`` afterwards (the contiguous stored count)."""

    @abstractmethod
    async def read_frames(self, job_id: str, start: int, stop: int) -> list[bytes]:
        """The stored frames at positions ``[start, stop)`` (a missing position ends the list)."""

    @abstractmethod
    async def read_input(self, job_id: str) -> bytes:
        """The staged input (raises UnknownJob when it is gone)."""

    @abstractmethod
    async def job_ids(self, limit: int) -> list[str]:
        """Ids of the newest jobs still stored, newest first."""

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
