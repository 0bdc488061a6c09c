"""Redis FrameBuffer (redis-py asyncio, hiredis parser when installed): stream state that survives the worker.

Keys of one stream share the hash tag ``{<stream_id>}`` (one Redis Cluster slot):

- ``pose3d:{sid}:meta``    hash: ``meta`` (JSON of :class:`StreamMeta`), ``cursor``, ``high``, ``maxi``,
  ``received``, ``trim``, ``closed``, ``ttok`` (tracker token), ``tracked`` (1 once a tracker state was stored), and
  the smoothing state: ``scur`` + ``smooth``
  (the cursor it is valid at + the blob), ``spcur`` + ``sprev`` (the one it replaced)
- ``pose3d:{sid}:frames``  hash: frame index → binary :class:`FrameRecord` (:func:`encode_record`)
- ``pose3d:{sid}:emits``   hash: frame index → ``start,stop,newest`` (what that frame's arrival emitted)
- ``pose3d:{sid}:tracker`` string: the tracker's serialised state
- ``pose3d:{sid}:closed``  string: a closed stream's answer (:meth:`RedisFrameBuffer.delete`), for ``CLOSED_TTL_S``

A frame is ONE round trip: one atomic Lua script, which mirrors :mod:`service.engine.windows`, does the whole
append (docs/streams-and-state.md); a stale tracker token is answered with the stored state. Every touch
refreshes the TTL of all four keys.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

from redis.exceptions import RedisError

from service.engine.framebuffer.base import (
    CLOSED_TTL_S,
    MAX_FRAMES_AHEAD,
    REPLAY_MARGIN,
    AppendStatus,
    Emission,
    FrameBuffer,
    FrameRecord,
    SmoothingSnapshot,
    StreamMeta,
    StreamState,
    TrackerView,
    decode_record,
    encode_record,
    new_token,
    out_of_range,
)
from service.engine.framebuffer.redis_lua import APPEND, CREATE, DELETE, FLUSH, SMOOTHED
from service.engine.types import WindowMode
from service.engine.windows import WindowSpec
from service.errors import Conflict, StreamFramesLost, Unavailable, UnknownStream
from service.redis_client import RedisClient, connect

_META_FIELDS: Final = ("meta", "cursor", "high", "maxi", "received", "trim", "closed", "ttok", "tracked")
"""The meta hash's fields a state or tracker read needs."""

DECODED_CACHE_BYTES: Final = 16 * 1024 * 1024
"""Encoded bytes of the records kept decoded (about as much again is held by the decoded arrays)."""


def stream_keys(stream_id: str) -> list[str]:
    """The four keys of a stream, hash-tagged on the stream id: meta, frames, emits, tracker."""
    base = f"pose3d:{{{stream_id}}}"
    return [f"{base}:meta", f"{base}:frames", f"{base}:emits", f"{base}:tracker"]


def closed_key(stream_id: str) -> str:
    """Where a closed stream's answer is kept (the same hash tag as :func:`stream_keys`)."""
    return f"pose3d:{{{stream_id}}}:closed"


class RedisFrameBuffer(FrameBuffer):
    """Frame buffer in Redis at ``url``: any worker attached to it continues any stream. ``ttl_s``: idle streams
    expire; ``known_streams``: streams whose tracker state this process keeps a copy of (LRU)."""

    kind = "redis"
    shared = True

    def __init__(self, url: str, ttl_s: float = 300.0, known_streams: int = 10_000) -> None:
        self._redis: RedisClient = connect(url)
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._append = self._redis.register_script(APPEND)
        self._flush = self._redis.register_script(FLUSH)
        self._create = self._redis.register_script(CREATE)
        self._smoothed = self._redis.register_script(SMOOTHED)
        self._delete = self._redis.register_script(DELETE)
        self._known: OrderedDict[str, TrackerView] = OrderedDict()
        self._known_max = known_streams
        self._decoded: OrderedDict[bytes, FrameRecord] = OrderedDict()
        self._decoded_bytes = 0

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except RedisError as e:
            raise Unavailable(f"frame buffer (Redis) failed: {e}") from e

    def _remember(self, stream_id: str, view: TrackerView) -> None:
        self._known[stream_id] = view
        self._known.move_to_end(stream_id)
        while len(self._known) > self._known_max:
            self._known.popitem(last=False)

    async def create(self, meta: StreamMeta) -> StreamState:
        token = new_token()
        keys = [*stream_keys(meta.stream_id), closed_key(meta.stream_id)]
        created = await self._call(self._create, keys, [meta.to_json(), self.ttl_ms, token])
        if not created:
            existing = await self.state(meta.stream_id)
            if existing.meta == meta and not existing.closed:
                return existing  # an open retried on another worker (its first reply was lost): idempotent
            raise Conflict(f"stream {meta.stream_id!r} already exists with other options")
        self._remember(meta.stream_id, TrackerView(meta, None, token))
        return StreamState(meta)

    async def _read(self, stream_id: str, tracker: bool) -> tuple[dict[bytes, bytes], bytes | None]:
        """The meta hash (and the tracker state), all TTLs refreshed, in one round trip."""
        keys = stream_keys(stream_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hmget(keys[0], _META_FIELDS)  # not the smoothing blobs: they travel with appends only
                if tracker:
                    pipe.get(keys[3])
                for key in keys:
                    pipe.pexpire(key, self.ttl_ms)
                replies = await pipe.execute()
        except RedisError as e:
            raise Unavailable(f"frame buffer (Redis) failed: {e}") from e
        meta = dict(zip((f.encode() for f in _META_FIELDS), replies[0], strict=True))
        if meta[b"meta"] is None:
            self._known.pop(stream_id, None)
            raise UnknownStream(f"stream {stream_id!r} does not exist or has expired")
        return meta, replies[1] if tracker else None

    async def state(self, stream_id: str) -> StreamState:
        raw, _ = await self._read(stream_id, tracker=False)
        received, cursor, high, maxi, closed = (
            int(raw[name]) for name in (b"received", b"cursor", b"high", b"maxi", b"closed")
        )
        return StreamState(StreamMeta.from_json(raw[b"meta"]), received, cursor, high, maxi, bool(closed))

    async def tracker(self, stream_id: str, fresh: bool = False) -> TrackerView:
        known = None if fresh else self._known.get(stream_id)
        if known is not None:
            self._known.move_to_end(stream_id)
            return known
        raw, tracker = await self._read(stream_id, tracker=True)
        return self._stored_view(stream_id, raw[b"meta"], raw[b"ttok"], bool(int(raw[b"tracked"] or 0)), tracker)

    def _stored_view(
        self, stream_id: str, meta: bytes, token: bytes, tracked: bool, tracker: bytes | None
    ) -> TrackerView:
        """The stored tracker state as a view this process remembers. Once the stream stored one, none stored means
        Redis lost it (evicted): StreamFramesLost, rather than tracking again from nothing (ids reused for others)."""
        if tracked and tracker is None:
            self._known.pop(stream_id, None)
            raise StreamFramesLost(
                f"stream {stream_id!r}: the frame buffer lost its tracker state (evicted), so its people's track ids "
                "cannot be continued; open a new stream"
            )
        view = TrackerView(StreamMeta.from_json(meta), tracker, token.decode())
        self._remember(stream_id, view)
        return view

    def _decode(self, data: bytes) -> FrameRecord:
        """``data`` decoded, from a small cache keyed by the bytes themselves: a window's frames come back with
        every frame that moves it, so each record is decoded once rather than once per window it is in."""
        record = self._decoded.get(data)
        if record is not None:
            self._decoded.move_to_end(data)
            return record
        record = self._decoded[data] = decode_record(data)
        self._decoded_bytes += len(data)
        while self._decoded_bytes > DECODED_CACHE_BYTES:
            old, _ = self._decoded.popitem(last=False)
            self._decoded_bytes -= len(old)
        return record

    def _window_args(self, window: WindowSpec, mode: WindowMode) -> list[Any]:
        """The scripts' window arguments: lag_left lag_right causal ttl_ms."""
        return [window.lag_left, window.lag_right, "1" if mode is WindowMode.CAUSAL else "0", self.ttl_ms]

    def _emission(self, reply: list[Any], stream_id: str) -> Emission:
        """The script's answer as an :class:`Emission`. Every frame up to the contiguous ``high`` was received (and
        none the windows need is trimmed), so one of them the store no longer holds was lost: StreamFramesLost; so
        is a frame received past ``high`` that it no longer holds (its windows would never be emitted, or be flushed
        as a gap)."""
        status = reply[0].decode()
        if status in ("missing", "closed"):
            self._known.pop(stream_id, None)
            if status == "missing":
                raise UnknownStream(f"stream {stream_id!r} does not exist or has expired")
            raise Conflict(f"stream {stream_id!r} is closed")
        _, cursor, high, _maxi, received, _closed, start, stop, newest, lo, values, (scur, *blob), ahead = reply
        lost = [int(lo) + i for i, v in enumerate(values) if v is None and int(lo) + i <= int(high)]
        if lost:
            raise StreamFramesLost(
                f"stream {stream_id!r}: the frame buffer lost {len(lost)} stored frame(s) from frame {lost[0]} "
                f"(evicted) that the windows of frames {int(start)}..{int(stop) - 1} need; open a new stream"
            )
        if int(ahead) > 0:
            raise StreamFramesLost(
                f"stream {stream_id!r}: the frame buffer lost {int(ahead)} stored frame(s) received after frame "
                f"{int(high)} (evicted), whose poses can no longer be made; open a new stream"
            )
        records = {lo + i: self._decode(v) for i, v in enumerate(values) if v is not None}
        targets = range(int(start), int(stop))
        smoothing = SmoothingSnapshot(int(scur), blob[0] if blob else None)  # Lua's false (nil) ends the table
        return Emission(AppendStatus(status), targets, int(newest), records, int(received), int(cursor), smoothing)

    async def append(
        self,
        stream_id: str,
        record: FrameRecord,
        window: WindowSpec,
        mode: WindowMode,
        tracker: bytes | None = None,
        seen: str | None = None,
    ) -> Emission:
        token = new_token()
        args = [record.frame_index, encode_record(record), tracker or b"", seen or "", token]
        args += [*self._window_args(window, mode), REPLAY_MARGIN, MAX_FRAMES_AHEAD]
        reply = await self._call(self._append, stream_keys(stream_id), args)
        status = reply[0].decode()
        if status == "conflict":  # the stored state comes with the answer: the retry needs no read
            _, meta, stored, tracked, *stored_tracker = reply  # a nil tracker ends the table
            self._stored_view(stream_id, meta, stored, bool(tracked), stored_tracker[0] if stored_tracker else None)
            return Emission(AppendStatus.CONFLICT)
        if status == "range":
            raise out_of_range(record.frame_index, int(reply[1])) or Conflict("frame index refused")
        if status == "lost":
            raise StreamFramesLost(
                f"stream {stream_id!r}: the frame buffer lost what frame {int(reply[1])} emitted (evicted), so its "
                "retry cannot be answered again; open a new stream"
            )
        emission = self._emission(reply, stream_id)
        known = self._known.get(stream_id)
        if emission.status is AppendStatus.ADDED and tracker is not None:
            if known is not None and known.token == seen:  # what this process wrote is what is stored now
                self._remember(stream_id, TrackerView(known.meta, tracker, token))
            else:
                self._known.pop(stream_id, None)
        return emission

    async def flush(self, stream_id: str, window: WindowSpec, mode: WindowMode) -> Emission:
        reply = await self._call(self._flush, stream_keys(stream_id), self._window_args(window, mode))
        self._known.pop(stream_id, None)
        return self._emission(reply, stream_id)

    async def smoothed(self, stream_id: str, expected: int, cursor: int, state: bytes) -> bool:
        stored = await self._call(self._smoothed, stream_keys(stream_id)[:1], [expected, cursor, state, self.ttl_ms])
        if int(stored) < 0:
            raise UnknownStream(f"stream {stream_id!r} does not exist or has expired")
        return bool(stored)

    async def delete(self, stream_id: str, answer: bytes | None = None) -> bool:
        self._known.pop(stream_id, None)
        keys = [*stream_keys(stream_id), closed_key(stream_id)]
        return bool(await self._call(self._delete, keys, [answer or b"", int(CLOSED_TTL_S * 1000)]))

    async def closed_answer(self, stream_id: str) -> bytes | None:
        try:  # bytes: the client never decodes replies (:func:`~service.redis_client.connect`)
            answer: bytes | None = await self._redis.get(closed_key(stream_id))  # type: ignore[assignment]
        except RedisError as e:
            raise Unavailable(f"frame buffer (Redis) failed: {e}") from e
        return answer

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def count(self) -> int:
        """Streams' meta keys (``pose3d:{*}:meta``: not the job store's ``pose3d:job:…:meta`` in the same Redis)."""
        return len([key async for key in self._redis.scan_iter(match=stream_keys("*")[0], count=1000)])

    async def aclose(self) -> None:
        await self._redis.aclose()
