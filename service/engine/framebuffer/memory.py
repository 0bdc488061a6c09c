"""In-memory FrameBuffer: the embedded default. Bounded (``max_streams``), idle streams expire after ``ttl_s``.

Records are kept as :class:`FrameRecord` objects (no encoding); frames older than every window still
needed (plus a small replay margin) are dropped as the cursor advances, so a stream's memory stays flat
however long it runs.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from service.engine.framebuffer.base import (
    CLOSED_TTL_S,
    REPLAY_MARGIN,
    AppendStatus,
    Emission,
    FrameBuffer,
    FrameRecord,
    StreamMeta,
    StreamState,
    TrackerView,
    new_token,
    out_of_range,
    snapshot_for,
)
from service.engine.types import WindowMode
from service.engine.windows import WindowSpec, emission_range, needed_range
from service.errors import Conflict, Overloaded, UnknownStream


@dataclass
class _Stream:
    state: StreamState
    touched: float
    frames: dict[int, FrameRecord] = field(default_factory=dict)
    emits: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # frame → (start, stop, newest)
    tracker: bytes | None = None
    token: str = field(default_factory=new_token)
    trimmed_below: int = 0
    smooth: tuple[int, bytes] = (0, b"")  # (emission cursor, smoothing state valid there)
    smooth_prev: tuple[int, bytes] | None = None  # the one it replaced (a replayed emission's)


class MemoryFrameBuffer(FrameBuffer):
    """Streams in a dict, least recently used first: at most ``max_streams`` (one more raises Overloaded, after
    expiring those untouched for ``ttl_s`` by ``clock``, monotonic seconds); as many closed streams' answers, each
    for :data:`CLOSED_TTL_S`."""

    kind = "memory"

    def __init__(self, max_streams: int = 10_000, ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.max_streams = max_streams
        self.ttl_s = ttl_s
        self._clock = clock
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._closed: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # stream id → (expiry, answer), by expiry

    def _expire(self) -> None:
        now = self._clock()
        while self._streams:
            sid, stream = next(iter(self._streams.items()))
            if now - stream.touched < self.ttl_s:
                break
            del self._streams[sid]
        while self._closed and next(iter(self._closed.values()))[0] <= now:
            self._closed.popitem(last=False)

    def _get(self, stream_id: str) -> _Stream:
        self._expire()
        stream = self._streams.get(stream_id)
        if stream is None:
            raise UnknownStream(f"stream {stream_id!r} does not exist or has expired")
        stream.touched = self._clock()
        self._streams.move_to_end(stream_id)
        return stream

    async def create(self, meta: StreamMeta) -> StreamState:
        self._expire()
        existing = self._streams.get(meta.stream_id)
        if existing is not None:
            if existing.state.meta == meta and not existing.state.closed:
                return existing.state  # an open retried (its first reply was lost): idempotent
            raise Conflict(f"stream {meta.stream_id!r} already exists with other options")
        if len(self._streams) >= self.max_streams:
            raise Overloaded(f"too many open streams ({self.max_streams})", retry_after_s=5.0)
        state = StreamState(meta)
        self._streams[meta.stream_id] = _Stream(state, self._clock())
        self._closed.pop(meta.stream_id, None)
        return state

    async def state(self, stream_id: str) -> StreamState:
        return self._get(stream_id).state

    async def tracker(self, stream_id: str, fresh: bool = False) -> TrackerView:
        s = self._get(stream_id)  # always the live state (no copy to go stale)
        return TrackerView(s.state.meta, s.tracker, s.token)

    @staticmethod
    def _emission(s: _Stream, status: AppendStatus, targets: range, newest: int, needed: range) -> Emission:
        """``targets`` with the stored frames of ``needed`` and the smoothing state for ``targets.start``."""
        records = {i: s.frames[i] for i in needed if i in s.frames}
        smoothing = snapshot_for(targets.start, s.smooth, s.smooth_prev)
        st = s.state
        return Emission(status, targets, newest, records, st.frames_received, st.next_emit, smoothing)

    async def append(
        self,
        stream_id: str,
        record: FrameRecord,
        window: WindowSpec,
        mode: WindowMode,
        tracker: bytes | None = None,
        seen: str | None = None,
    ) -> Emission:
        s = self._get(stream_id)
        st = s.state
        if st.closed:
            raise Conflict(f"stream {stream_id!r} is closed")
        if seen is not None and seen != s.token:
            return Emission(AppendStatus.CONFLICT, frames_received=st.frames_received, next_emit=st.next_emit)
        idx = record.frame_index
        if (error := out_of_range(idx, st.contiguous_high)) is not None:
            raise error
        if idx in s.frames or idx < s.trimmed_below:
            return self._replay(s, idx, window, mode)
        s.frames[idx] = record
        if tracker is not None:
            s.tracker, s.token = tracker, new_token()
        high = st.contiguous_high
        while high + 1 in s.frames:
            high += 1
        targets = emission_range(st.next_emit, high, window, mode)
        s.emits[idx] = (targets.start, targets.stop, high)
        s.state = replace(
            st,
            frames_received=st.frames_received + 1,
            next_emit=targets.stop,
            contiguous_high=high,
            max_index=max(st.max_index, idx),
        )
        emission = self._emission(s, AppendStatus.ADDED, targets, high, needed_range(targets, window, high, mode))
        self._trim(s, window, targets.start)
        return emission

    def _replay(self, s: _Stream, idx: int, window: WindowSpec, mode: WindowMode) -> Emission:
        start, stop, newest = s.emits.get(idx, (0, 0, -1))
        targets = range(start, stop)
        needed = needed_range(targets, window, newest, mode)
        if len(targets) and needed.start < s.trimmed_below:
            targets, needed = range(0), range(0)  # too old to answer again
        return self._emission(s, AppendStatus.DUPLICATE, targets, newest, needed)

    def _trim(self, s: _Stream, window: WindowSpec, emitted_from: int) -> None:
        """Drop frames no window will need: behind the last ``REPLAY_MARGIN`` targets and behind the latest
        emission (from ``emitted_from``), so that the frame which made it can always be retried."""
        keep_from = min(emitted_from, s.state.next_emit - REPLAY_MARGIN) - window.lag_left
        while s.trimmed_below < keep_from:
            s.frames.pop(s.trimmed_below, None)
            s.emits.pop(s.trimmed_below, None)
            s.trimmed_below += 1

    async def flush(self, stream_id: str, window: WindowSpec, mode: WindowMode) -> Emission:
        s = self._get(stream_id)
        s.state = st = replace(s.state, closed=True)
        newest = st.max_index
        targets = range(st.next_emit, max(st.next_emit, newest + 1))
        return self._emission(s, AppendStatus.ADDED, targets, newest, needed_range(targets, window, newest, mode))

    async def smoothed(self, stream_id: str, expected: int, cursor: int, state: bytes) -> bool:
        s = self._get(stream_id)
        if s.smooth[0] != expected:
            return False
        s.smooth_prev, s.smooth = s.smooth, (cursor, state)
        return True

    async def delete(self, stream_id: str, answer: bytes | None = None) -> bool:
        if answer:
            self._closed.pop(stream_id, None)
            self._closed[stream_id] = (self._clock() + CLOSED_TTL_S, answer)
            while len(self._closed) > self.max_streams:
                self._closed.popitem(last=False)
        return self._streams.pop(stream_id, None) is not None

    async def closed_answer(self, stream_id: str) -> bytes | None:
        self._expire()
        kept = self._closed.get(stream_id)
        return None if kept is None else kept[1]

    async def ping(self) -> bool:
        return True

    async def count(self) -> int:
        self._expire()
        return len(self._streams)
