"""The streaming client: frames to ``Pose3D.StreamEstimate``, results back as they are ready.

- **Pacing**: at the source rate (frame timestamps) or as fast as the server takes them.
- **Flow control**: at most ``lag_frames + max_ahead`` frames are unanswered at once (``lag_frames``: what
  the model's window needs ahead of a frame, from the server's ``opened`` message).
- **Resume**: if the connection drops (gateway restarted, network), the client reconnects with the
  stream id and re-sends every frame after the last result it received; results already received are
  not repeated. No frame is lost as long as the stream has not idled out on the server.
- **Statistics**: end-to-end latency per frame (from sending frame *t* to receiving its result; in
  centred mode this includes waiting for the window's future frames) and from sending the last frame the
  window needs; percentiles and results per second at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
import numpy as np
import tenacity

from service.client.connection import Connection
from service.client.results import frame_json
from service.client.sources import SourceFrame, encode_frame
from service.errors import Unavailable
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from service.rpc.server import channel_options
from service.rpc.status import error_from_rpc

MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
_RESUMABLE: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean of ``values``, rounded to 0.1 ({} for none)."""
    if not values:
        return {}
    array = np.asarray(values, dtype=np.float64)
    found = {**{f"p{q}": np.percentile(array, q) for q in (50, 90, 99)}, "max": array.max(), "mean": array.mean()}
    return {name: round(float(value), 1) for name, value in found.items()}


@dataclass
class StreamStats:
    stream_id: str = ""
    frames_sent: int = 0
    results: int = 0
    resumes: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    latency_ms: list[float] = field(default_factory=list)
    window_latency_ms: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def fps(self) -> float:
        return self.results / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "frames_sent": self.frames_sent,
            "results": self.results,
            "resumes": self.resumes,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            "latency_ms": percentiles(self.latency_ms),
            "window_latency_ms": percentiles(self.window_latency_ms),
        }

    def report(self) -> str:
        s = self.summary()

        def line(name: str, values: dict[str, float]) -> str:
            return f"{name}: " + "  ".join(f"{k} {v:.1f}" for k, v in values.items())

        return "\n".join(
            [
                f"stream {s['stream_id']}: {s['frames_sent']} frames sent, {s['results']} results in "
                f"{s['seconds']:.2f} s = {s['fps']:.1f} fps; resumed {s['resumes']} time(s)",
                line("latency ms, frame sent -> its result      ", s["latency_ms"]),
                line("latency ms, window's last frame -> result ", s["window_latency_ms"]),
            ]
        )


class _Disconnected(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.retry_after_s = retry_after_s  # a refusal's ``retry-after-s``: reconnect no sooner


@dataclass
class StreamConfig:
    options: pb.Options = field(default_factory=pb.Options)
    encoding: str = "png"  # lossless by default: results equal the clip posted whole
    paced: bool = True  # send at the source rate (frame timestamps); False: as fast as possible
    max_ahead: int = 8  # unanswered frames allowed beyond the window's lag
    resume_attempts: int = 1000  # reconnections in one outage, at most (the budget usually ends it first)
    resume_backoff_s: float = 0.5  # first backoff; doubles per attempt up to resume_backoff_max_s, full jitter
    resume_backoff_max_s: float = 5.0
    connection: Connection = field(default_factory=Connection)  # API key and TLS of the gateway
    retry_budget_s: float = 60.0  # an outage (no result since the last failure) is given up after this


def backoff(config: StreamConfig) -> tenacity.wait_random_exponential:
    """The wait before reconnection *n* (1, 2, ...) of an outage: uniform in ``[0, min(max, first·2^(n-1))]``."""
    return tenacity.wait_random_exponential(multiplier=config.resume_backoff_s, max=config.resume_backoff_max_s)


def _refusal_wait(state: tenacity.RetryCallState) -> float:
    """Seconds the failure of ``state`` asks to wait: its ``retry-after-s`` (a refusal: engine loading), else 0."""
    failure = state.outcome.exception() if state.outcome is not None else None
    return (failure.retry_after_s or 0.0) if isinstance(failure, _Disconnected) else 0.0


class StreamClient:
    """Runs one stream over ``frames`` (images, encoded here, each may ask for the person detector with
    ``SourceFrame.detect_people``; or ready ``StreamFrame`` messages, e.g. 2D keypoints; paced by their
    ``timestamp_s``); ``on_result`` gets each result as the REST-shaped JSON dict
    (plus ``latency_ms``); ``on_progress`` (optional) gets the stats after each result."""

    def __init__(
        self,
        address: str,
        frames: Iterator[SourceFrame] | Iterator[SourceFrame | pb.StreamFrame],
        config: StreamConfig,
        on_result: Callable[[dict[str, Any]], None],
        on_progress: Callable[[StreamStats], None] | None = None,
    ) -> None:
        self.address = address
        self.config = config
        self._frames = frames
        self._on_result = on_result
        self._on_progress = on_progress
        self.stats = StreamStats()
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # between reconnections (tests hold it)
        self._pending: OrderedDict[int, pb.StreamEstimateRequest] = OrderedDict()  # sent, no result yet
        self._sent_at: dict[int, float] = {}
        self._last_result = -1
        self._last_index = -1
        self._source_done = False
        self._lag = 0
        self._first_timestamp: float | None = None
        self._clock_start = 0.0

    async def run(self) -> StreamStats:
        """Stream every frame, reconnecting after disconnects — also before the stream opened (a fresh stream is
        opened again) — with exponential backoff and full jitter (:func:`backoff`), never sooner than an UNAVAILABLE
        refusal's ``retry-after-s``, for up to ``retry_budget_s`` and ``resume_attempts`` per outage (failures with no
        result between them); raises the service error if the server refuses."""
        self.stats = StreamStats()
        config, at_failure, jitter = self.config, -1, backoff(self.config)
        retrying = tenacity.AsyncRetrying(
            sleep=self.sleep,
            wait=lambda state: max(_refusal_wait(state), jitter(state)),
            stop=tenacity.stop_after_attempt(config.resume_attempts + 1)
            | tenacity.stop_after_delay(config.retry_budget_s),
            retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, _Disconnected) and exc.code in _RESUMABLE),
            before_sleep=self._count_resume,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._session()
                state = attempt.retry_state
                if state.outcome is not None and state.outcome.failed and self.stats.results != at_failure:
                    at_failure = self.stats.results  # a result since the last failure: a new outage starts here
                    # (tenacity's stop and wait read these two: the budget and the backoff start again)
                    state.attempt_number, state.start_time = 1, state.outcome_timestamp or state.start_time
        except _Disconnected as exc:
            raise Unavailable(f"the stream was interrupted and could not resume ({exc})") from exc
        self.stats.finished = time.monotonic()
        return self.stats

    def _count_resume(self, _: tenacity.RetryCallState) -> None:
        self.stats.resumes += 1

    async def _next_frame(self) -> pb.StreamEstimateRequest | None:
        def produce() -> pb.StreamFrame | None:
            frame = next(self._frames, None)
            if frame is None or isinstance(frame, pb.StreamFrame):
                return frame
            data = encode_frame(frame.image, self.config.encoding)
            return pb.StreamFrame(
                image=data, frame_index=frame.index, timestamp_s=frame.timestamp_s, detect_people=frame.detect_people
            )

        message = await asyncio.to_thread(produce)
        if message is None:
            return None
        if self.config.paced:
            if self._first_timestamp is None:
                self._first_timestamp, self._clock_start = message.timestamp_s, time.monotonic()
            due = self._clock_start + (message.timestamp_s - self._first_timestamp)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        return pb.StreamEstimateRequest(frame=message)

    def _take_result(self, msg: pb.FrameResult) -> None:
        now = time.monotonic()
        index = msg.frame_index
        if index <= self._last_result:
            return  # replayed after a resume: already delivered
        self._last_result = index
        document = frame_json(msg)
        sent = self._sent_at.get(index)
        if sent is not None:
            latency = (now - sent) * 1000.0
            self.stats.latency_ms.append(latency)
            document["latency_ms"] = round(latency, 3)
            window_end = self._sent_at.get(min(index + self._lag, self._last_index))
            if window_end is not None:
                self.stats.window_latency_ms.append((now - window_end) * 1000.0)
        for key in [k for k in self._pending if k <= index]:
            del self._pending[key]
        for key in [k for k in self._sent_at if k < index - self._lag]:
            del self._sent_at[key]
        self.stats.results += 1
        self._on_result(document)
        if self._on_progress is not None:
            self._on_progress(self.stats)

    async def _session(self) -> None:
        options = channel_options(MAX_MESSAGE_BYTES)
        async with self.config.connection.grpc_channel(self.address, options) as channel:
            stub = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
            call = stub.StreamEstimate(metadata=self.config.connection.metadata())
            try:
                await self._converse(call)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError, ConnectionError) as exc:
                ended = await self._status(call)  # the server's answer, which a write that met it does not carry
                if ended is not None:
                    raise self._failure(ended) from exc
                if isinstance(exc, grpc.aio.AioRpcError):
                    raise self._failure(exc) from exc
                call.cancel()
                raise _Disconnected(grpc.StatusCode.UNAVAILABLE, str(exc)) from exc

    @staticmethod
    async def _status(call: Any) -> grpc.aio.AioRpcError | None:
        """The error status ``call`` ended with, if it has ended with one: a write after the server ended the call
        fails only with "RPC already finished" (or a bare INTERNAL of gRPC core), and the status says why."""
        if not call.done() or await call.code() is grpc.StatusCode.OK:
            return None
        return grpc.aio.AioRpcError(
            await call.code(), await call.initial_metadata(), await call.trailing_metadata(), await call.details()
        )

    def _failure(self, exc: grpc.aio.AioRpcError) -> Exception:
        """Transport failures and UNAVAILABLE (no worker right now) resume; other service errors are final."""
        reported = any(k == "pose3d-error-type" for k, _ in exc.trailing_metadata() or ())
        error = error_from_rpc(exc)
        if exc.code() is grpc.StatusCode.UNAVAILABLE or (exc.code() in _RESUMABLE and not reported):
            return _Disconnected(exc.code(), exc.details() or "", error.retry_after_s)
        return error

    async def _converse(self, call: Any) -> None:
        opening = pb.StreamOpen(options=self.config.options, stream_id=self.stats.stream_id, explicit_close=True)
        await call.write(pb.StreamEstimateRequest(open=opening))
        first = await call.read()
        if first is grpc.aio.EOF or first.WhichOneof("message") != "opened":
            raise _Disconnected(grpc.StatusCode.UNAVAILABLE, "stream closed before it opened")
        if not self.stats.stream_id:  # a new stream; a resumed one keeps its lag (older gateways undercount it)
            self._lag = int(first.opened.lag_frames)
        self.stats.stream_id = first.opened.stream_id
        window = self._lag + max(1, self.config.max_ahead)
        progressed = asyncio.Event()

        async def read_results() -> None:
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    return
                if msg.WhichOneof("message") == "result":
                    self._take_result(msg.result)
                    progressed.set()

        reader = asyncio.create_task(read_results())
        try:
            for resent in list(self._pending.values()):  # resume: re-send what has no result yet
                await call.write(resent)
            while not self._source_done:
                while len(self._pending) >= window:
                    progressed.clear()
                    waiter = asyncio.create_task(progressed.wait())
                    await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    if reader.done():
                        reader.result()
                        raise _Disconnected(grpc.StatusCode.UNAVAILABLE, "server ended the stream early")
                message = await self._next_frame()
                if message is None:
                    self._source_done = True
                    break
                index = message.frame.frame_index
                self._pending[index] = message
                self._sent_at[index] = time.monotonic()
                self._last_index = index
                self.stats.frames_sent += 1
                await call.write(message)
            await call.write(pb.StreamEstimateRequest(close=pb.StreamClose()))  # a cancel never closes the stream
            await call.done_writing()
            await reader
        finally:  # the reader's own error, if it ended with one, is the call's: retrieved here, raised by the caller
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        status = await call.code()
        if status != grpc.StatusCode.OK:
            raise _Disconnected(status, await call.details())
