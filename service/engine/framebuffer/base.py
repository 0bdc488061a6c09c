"""The FrameBuffer interface, the per-frame record it stores, and the record's compact binary codec.

A stream's state lives here, never in a model object (docs/streams-and-state.md): metadata, counters, the tracker's
state with its token, the smoothing state, and one :class:`FrameRecord` per frame, keyed by frame index (the first
write wins, so retried and out-of-order frames are idempotent). :meth:`FrameBuffer.append` stores a frame, advances
the emission cursor by :mod:`service.engine.windows`'s rules and returns what the newly ready windows need, in one
atomic step (one round trip on Redis). Every tracker write takes a fresh random token; an append tracked with a
stale token stores nothing and answers ``CONFLICT``, so a shared buffer may serve :meth:`FrameBuffer.tracker` from
this process's copy. The smoothing state (:mod:`service.engine.world`) is an opaque blob tagged with the cursor it
is valid at, read with each append (:class:`SmoothingSnapshot`) and stored by :meth:`FrameBuffer.smoothed`
(compare-and-set on the cursor).
"""

from __future__ import annotations

import json
import math
import secrets
import struct
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from itertools import accumulate
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from service.engine.types import FloatArray, WindowMode
from service.engine.windows import WindowSpec
from service.errors import InvalidInput

IntArray = npt.NDArray[np.int32]

J: Final = 17
# Targets whose windows' frames are kept behind the emission cursor, so that a retried frame can be answered
# again (the frames of the latest emission are kept too, however many targets it emitted).
REPLAY_MARGIN: Final = 16
MAX_FRAMES_AHEAD: Final = 4096
"""A stream frame may arrive at most this many frames past the first missing one."""
CLOSED_TTL_S: Final = 60.0
"""Seconds a closed stream's answer is kept (:meth:`FrameBuffer.delete`): a close retried after its reply was lost
(its worker died before answering) gets the same tail rather than 404."""


@dataclass(frozen=True)
class FrameRecord:
    """Everything a stream keeps about one frame (P tracked people).

    Attributes:
        frame_index: the stream's frame index (0, 1, 2, …).
        timestamp_s: the client's timestamp, or None.
        image_size: ``(width, height)`` pixels.
        track_ids: ``(P,) int32``.
        boxes: ``(P, 4) float32`` xyxy pixels; box_scores: ``(P,) float32``.
        keypoints_px: ``(P, 17, 2) float32`` H36M-17 image pixels.
        keypoints_norm: ``(P, 17, 2) float32`` H36M-17, ``X / w * 2 - [1, h / w]``.
        scores: ``(P, 17) float32`` keypoint confidences in [0, 1].
        tokens: ``(P, V, 17, D) float32`` per-joint tokens (CA-PF; ``V`` = 2 with flip test, else 1),
            or ``(P, 0, 17, 0)`` when the model needs none.
    """

    frame_index: int
    timestamp_s: float | None
    image_size: tuple[int, int]
    track_ids: IntArray
    boxes: FloatArray
    box_scores: FloatArray
    keypoints_px: FloatArray
    keypoints_norm: FloatArray
    scores: FloatArray
    tokens: FloatArray

    @property
    def num_people(self) -> int:
        return int(self.track_ids.shape[0])


# magic, version, frame_index, timestamp (NaN = none), width, height, people, token views, token dim
_HEADER: Final = struct.Struct("<4sBqdIIIII")
_MAGIC: Final = b"P3DF"
_VERSION: Final = 1


def encode_record(rec: FrameRecord) -> bytes:
    """Compact binary form: a 41-byte header, then the arrays' raw little-endian bytes."""
    p = rec.num_people
    views, dim = (rec.tokens.shape[1], rec.tokens.shape[3]) if rec.tokens.size else (0, 0)
    ts = math.nan if rec.timestamp_s is None else rec.timestamp_s
    header = _HEADER.pack(_MAGIC, _VERSION, rec.frame_index, ts, *rec.image_size, p, views, dim)
    floats = (rec.boxes, rec.box_scores, rec.keypoints_px, rec.keypoints_norm, rec.scores, rec.tokens)
    track_ids = np.ascontiguousarray(rec.track_ids, dtype="<i4").tobytes()
    return header + track_ids + b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in floats)


def decode_record(data: bytes) -> FrameRecord:
    """Inverse of :func:`encode_record`; raises ValueError on a foreign or truncated payload."""
    if len(data) < _HEADER.size:
        raise ValueError("frame record is truncated")
    magic, version, index, ts, width, height, p, views, dim = _HEADER.unpack_from(data)
    if magic != _MAGIC or version != _VERSION:
        raise ValueError(f"not a frame record of version {_VERSION}")
    shapes: list[tuple[int, ...]] = [(p, 4), (p,), (p, J, 2), (p, J, 2), (p, J), (p, views, J, dim)]
    sizes = [math.prod(shape) for shape in shapes]
    expected = _HEADER.size + 4 * (p + sum(sizes))
    if len(data) != expected:
        raise ValueError(f"frame record has {len(data)} bytes, expected {expected}")
    track_ids = np.frombuffer(data, dtype="<i4", count=p, offset=_HEADER.size).astype(np.int32)
    floats = np.frombuffer(data, dtype="<f4", offset=_HEADER.size + 4 * p).astype(np.float32)  # one copy, writable
    # views into the one copy (a window reads ~N records per frame: decoding must be cheap)
    ends = accumulate(sizes)
    arrays = [floats[end - size : end].reshape(shape) for size, end, shape in zip(sizes, ends, shapes, strict=True)]
    boxes, box_scores, kp_px, kp_norm, scores, tokens = arrays
    return FrameRecord(
        int(index), None if math.isnan(ts) else float(ts), (int(width), int(height)), track_ids,
        boxes, box_scores, kp_px, kp_norm, scores, tokens,
    )  # fmt: skip


@dataclass(frozen=True)
class StreamMeta:
    """What a stream was opened with (JSON-serialisable, small)."""

    stream_id: str
    model: str
    mode: WindowMode
    flip_test: bool
    max_people: int | None = None
    boxes: tuple[tuple[float, float, float, float], ...] | None = None
    world: str = ""
    """Camera intrinsics and smoothing options (:func:`service.engine.world.world_to_json`; "" = defaults)."""

    def __post_init__(self) -> None:
        # one canonical form (tuples of floats), so that a meta equals its stored and reloaded copy
        if self.boxes is not None:
            object.__setattr__(self, "boxes", tuple(tuple(map(float, box)) for box in self.boxes))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> StreamMeta:
        """The meta :meth:`to_json` wrote (fields it lacks take their defaults; keys not fields are ignored)."""
        d: dict[str, Any] = json.loads(text)
        d["mode"] = WindowMode(d["mode"])
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass(frozen=True)
class StreamState:
    """A stream's metadata and counters. ``next_emit`` is the emission cursor (= frames emitted, in order)."""

    meta: StreamMeta
    frames_received: int = 0
    next_emit: int = 0
    contiguous_high: int = -1
    max_index: int = -1
    closed: bool = False


@dataclass(frozen=True)
class TrackerView:
    """What tracking a frame needs: the stream's metadata, its tracker state (``None`` before the first tracked
    frame) and that state's token. It may be a copy this process remembers; :meth:`FrameBuffer.append` given
    a stale token stores nothing and answers ``CONFLICT``."""

    meta: StreamMeta
    tracker: bytes | None
    token: str


def new_token() -> str:
    """A fresh tracker token (64 random bits, hex): never equal to an earlier one, so a stale copy is detected."""
    return secrets.token_hex(8)


def out_of_range(frame_index: int, contiguous_high: int) -> InvalidInput | None:
    """The error for a frame index a stream refuses (negative, or too far past the first missing frame)."""
    if 0 <= frame_index <= contiguous_high + 1 + MAX_FRAMES_AHEAD:
        return None
    return InvalidInput(
        f"frame_index {frame_index} is out of range: streams count frames from 0 and a frame may "
        f"arrive at most {MAX_FRAMES_AHEAD} frames ahead of the first missing one ({contiguous_high + 1})"
    )


class AppendStatus(StrEnum):
    ADDED = "added"
    DUPLICATE = "duplicate"  # the frame was already stored: nothing changed, the original emission is replayed
    CONFLICT = "conflict"  # the tracker token is not the caller's (another writer, or reopened): track again


@dataclass(frozen=True)
class SmoothingSnapshot:
    """The stream's stored smoothing state as an append or flush found it.

    ``cursor``: the emission cursor the state is valid at; ``state``: the blob (``b""``: nothing fed yet) when
    ``cursor`` is the start of the emission it came with, else None (the stored state is elsewhere: behind it
    when an emission was never smoothed, ahead of it for an old replay)."""

    cursor: int = 0
    state: bytes | None = b""


def snapshot_for(start: int, current: tuple[int, bytes], previous: tuple[int, bytes] | None) -> SmoothingSnapshot:
    """The snapshot an emission starting at ``start`` gets from the stored ``current`` ``(cursor, blob)`` and the
    ``previous`` one it replaced (what :meth:`FrameBuffer.smoothed` keeps for a replayed emission)."""
    if current[0] == start:
        return SmoothingSnapshot(start, current[1])
    if previous is not None and previous[0] == start:
        return SmoothingSnapshot(start, previous[1])
    return SmoothingSnapshot(current[0], None)


@dataclass(frozen=True)
class Emission:
    """Targets ready for lifting and the records their windows need.

    ``targets``: frame indices to emit, in order (missing frames among them are skipped by the caller);
    ``newest``: the highest frame index the windows may see in centred mode;
    ``records``: frame index → record for every stored frame the windows may use;
    ``frames_received`` / ``next_emit``: the stream's counters after this step;
    ``smoothing``: the stored smoothing state for ``targets.start`` (read in the same step).
    """

    status: AppendStatus
    targets: range = range(0)
    newest: int = -1
    records: dict[int, FrameRecord] = field(default_factory=dict)
    frames_received: int = 0
    next_emit: int = 0
    smoothing: SmoothingSnapshot = field(default_factory=SmoothingSnapshot)


class FrameBuffer(ABC):
    """Per-stream storage of frames for temporal windows. Every method is safe to call concurrently for
    different streams; callers serialise the appends of one stream (the engine holds a per-stream lock)."""

    kind: ClassVar[str] = "custom"
    """Named in ``/readyz`` (``memory``, ``redis``)."""
    shared: ClassVar[bool] = False
    """True when every engine attached to the store sees every stream (any worker continues any stream);
    :meth:`count` is then a scan of the shared store, done on readiness probes only."""

    @abstractmethod
    async def create(self, meta: StreamMeta) -> StreamState:
        """Register a new stream; opening an open stream again with the same metadata returns its state (a
        retried open is idempotent). Raises Conflict if the id exists with other metadata or is closed,
        Overloaded when the buffer is full."""

    @abstractmethod
    async def state(self, stream_id: str) -> StreamState:
        """The stream's metadata and counters (refreshes its TTL). Raises UnknownStream."""

    @abstractmethod
    async def tracker(self, stream_id: str, fresh: bool = False) -> TrackerView:
        """The tracker state to assign the stream's next frame's tracks with: possibly this process's copy (no
        round trip), read from the store when ``fresh`` or when none is held (refreshes the TTL then).
        Raises UnknownStream."""

    @abstractmethod
    async def append(
        self,
        stream_id: str,
        record: FrameRecord,
        window: WindowSpec,
        mode: WindowMode,
        tracker: bytes | None = None,
        seen: str | None = None,
    ) -> Emission:
        """Store ``record`` (first write wins) and ``tracker`` if given (under a new token), advance the cursor
        by ``mode``'s rule and return what became ready, in one atomic step. ``seen``: the tracker token the
        caller tracked with (:attr:`TrackerView.token`); when the stored token differs nothing is stored and the
        status is ``CONFLICT`` (``None``: no check). Raises UnknownStream, Conflict if the stream is closed,
        InvalidInput if the frame index is out of range (:func:`out_of_range`)."""

    @abstractmethod
    async def flush(self, stream_id: str, window: WindowSpec, mode: WindowMode) -> Emission:
        """Mark the stream closed and return every target not yet emitted (the tail, edge-padded at the
        last received frame). Calling it again returns the same tail. Raises UnknownStream."""

    @abstractmethod
    async def smoothed(self, stream_id: str, expected: int, cursor: int, state: bytes) -> bool:
        """Store ``state``, the smoothing state valid at emission cursor ``cursor``, if the stored one is still
        the one valid at ``expected`` (which is kept as the previous state, for a replayed emission); True when
        stored. Raises UnknownStream."""

    @abstractmethod
    async def delete(self, stream_id: str, answer: bytes | None = None) -> bool:
        """Forget the stream; True if it existed. ``answer`` (non-empty bytes, opaque here: its close's tail) is kept
        under the stream id for :data:`CLOSED_TTL_S`, in the same step (:meth:`closed_answer`)."""

    @abstractmethod
    async def closed_answer(self, stream_id: str) -> bytes | None:
        """The answer the stream's close kept (:meth:`delete`); None when none is kept (expired, never closed,
        deleted without one, or opened again since)."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the storage answers."""

    @abstractmethod
    async def count(self) -> int:
        """Streams currently held (approximate for shared stores)."""

    async def aclose(self) -> None:  # noqa: B027 — optional hook
        """Release connections."""
