"""Differential property test: the memory and the Redis frame buffer (a real redis-server) driven with the same
random operation sequences — frames out of order, retried (with other content: the first write wins), far ahead,
several streams with their own window and mode, tracker writes with current and stale tokens, smoothing-state
writes with right and wrong expectations, flushes, re-opens — give identical answers: windows (targets, newest,
records), counters, smoothing snapshots, errors. TTL aside (the memory buffer's clock never moves here)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.engine.framebuffer import AppendStatus, Emission, FrameBuffer, MemoryFrameBuffer, StreamMeta
from service.engine.framebuffer.redis import RedisFrameBuffer
from service.engine.types import WindowMode
from service.engine.windows import WindowSpec
from service.errors import Pose3DError
from tests.conftest import RedisServer
from tests.unit.test_framebuffer import make_record

pytestmark = pytest.mark.redis

STREAMS = ("a", "b")
NEXT = 10_000
"""An append's frame index meaning "one past the highest this stream was sent" (long runs, so frames get trimmed)."""


@dataclass(frozen=True)
class Stream:
    window: WindowSpec
    mode: WindowMode


stream_specs = st.builds(
    Stream,
    st.builds(WindowSpec, st.sampled_from([1, 3, 5, 9]), st.integers(1, 2)),
    st.sampled_from(list(WindowMode)),
)
appends = st.tuples(
    st.just("append"),
    st.sampled_from(STREAMS),
    st.one_of(st.integers(-1, 60), st.just(NEXT), st.just(NEXT)),  # out of order, retried, far ahead, negative; or next
    st.integers(0, 2),  # people
    st.integers(0, 1),  # content seed: a retry may carry other bytes (the first write wins)
    st.booleans(),  # with a tracker state
    st.sampled_from(["none", "current", "stale"]),  # the tracker token the caller tracked with
)
smoothing_writes = st.tuples(
    st.just("smoothed"),
    st.sampled_from(STREAMS),
    st.booleans(),  # expected = the stored cursor (else another one)
    st.integers(0, 6),  # how far the new cursor moves
    st.binary(max_size=12),
)
others = st.tuples(st.sampled_from(["flush", "state", "tracker", "delete", "create"]), st.sampled_from(STREAMS))
operations = st.lists(st.one_of(appends, appends, appends, appends, smoothing_writes, others), max_size=120)


def _meta(stream_id: str, spec: Stream) -> StreamMeta:
    return StreamMeta(stream_id, "pstmo", spec.mode, flip_test=False)


def _emission(e: Emission) -> tuple[Any, ...]:
    """What must agree (a CONFLICT answers no window: its counters are not compared)."""
    if e.status is AppendStatus.CONFLICT:
        return (e.status,)
    records = {i: (r.frame_index, r.timestamp_s, r.track_ids.tolist(), r.keypoints_px.tobytes(), r.tokens.shape)
               for i, r in e.records.items()}  # fmt: skip
    return (e.status, e.targets, e.newest, records, e.frames_received, e.next_emit, e.smoothing)


class Driver:
    """One buffer under one sequence; every answer recorded as plain data (an error as its class)."""

    def __init__(self, buffer: FrameBuffer, prefix: str, specs: dict[str, Stream]) -> None:
        self.buffer, self.prefix, self.specs = buffer, prefix, specs
        self.answers: list[Any] = []
        self.cursors: dict[str, int] = {}  # the smoothing cursor each stream's last stored state is valid at
        self.sent: dict[str, int] = {}  # the highest frame index sent to each stream

    def sid(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    async def run(self, ops: list[tuple[Any, ...]]) -> list[Any]:
        for name in STREAMS:
            await self.buffer.create(_meta(self.sid(name), self.specs[name]))
        for op in ops:
            try:
                self.answers.append(await self.step(op))
            except Pose3DError as e:
                self.answers.append(type(e).__name__)
        return self.answers

    async def step(self, op: tuple[Any, ...]) -> Any:
        kind, name, *args = op
        sid, spec, buf = self.sid(name), self.specs[name], self.buffer
        if kind == "append":
            index, people, seed, with_tracker, seen = args
            if index == NEXT:
                index = self.sent.get(name, -1) + 1
            self.sent[name] = max(self.sent.get(name, -1), index)
            token = None
            if seen == "current":
                token = (await buf.tracker(sid, fresh=True)).token
            elif seen == "stale":
                token = "0" * 16
            record = replace(make_record(max(index, 0), people, seed=seed), frame_index=index)
            tracker = f"t{index}-{seed}".encode() if with_tracker else None
            return _emission(await buf.append(sid, record, spec.window, spec.mode, tracker, token))
        if kind == "smoothed":
            right, moved, blob = args
            cursor = self.cursors.get(name, 0)
            stored = await buf.smoothed(sid, cursor if right else cursor + 1, cursor + moved, blob)
            if stored:
                self.cursors[name] = cursor + moved
            return stored
        if kind == "flush":
            return _emission(await buf.flush(sid, spec.window, spec.mode))
        if kind == "state":
            s = await buf.state(sid)
            return (s.meta, s.frames_received, s.next_emit, s.contiguous_high, s.max_index, s.closed)
        if kind == "tracker":
            view = await buf.tracker(sid, fresh=True)
            return (view.meta, view.tracker)
        if kind == "delete":
            self.cursors.pop(name, None)  # a stream opened again starts with no smoothing state
            return await buf.delete(sid)
        return (await buf.create(_meta(sid, spec))).meta


@pytest.fixture(scope="module")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=stream_specs, b=stream_specs, ops=operations)
def test_memory_and_redis_buffers_answer_every_sequence_alike(
    redis_url: str, a: Stream, b: Stream, ops: list[tuple[Any, ...]]
) -> None:
    specs = {"a": a, "b": b}
    prefix = uuid.uuid4().hex

    async def both() -> tuple[list[Any], list[Any]]:
        redis = RedisFrameBuffer(redis_url, ttl_s=600)
        try:
            memory = await Driver(MemoryFrameBuffer(), prefix, specs).run(ops)
            shared = await Driver(redis, prefix, specs).run(ops)
        finally:
            await redis.aclose()
        return memory, shared

    memory, shared = asyncio.run(both())
    for i, (m, r) in enumerate(zip(memory, shared, strict=True)):
        assert _plain(m) == _plain(r), f"operation {i} {ops[i]}: memory {m!r} ≠ redis {r!r}"


def _plain(value: Any) -> Any:
    """Arrays as bytes, so answers compare with ==."""
    if isinstance(value, np.ndarray):
        return value.tobytes()
    if isinstance(value, tuple | list):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
