"""A small, real EngineClient for transport tests: deterministic arithmetic instead of networks.

Keypoint frames lift to ``keypoints_3d = [x/1000, y/1000, frame_index/1000]``; image frames (encoded
bytes are decoded as the engine's decode stage does) give one person whose 2D points are the image's mean
colour. Streams are causal (each frame answers itself) and live in this object's memory, so the tests can
see which engine served what.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

import numpy as np

from model.joints import NUM_JOINTS
from service.engine.clips import clip_frames, positioned
from service.engine.prepare import decode_image
from service.engine.types import (
    BoxSource,
    EstimateOptions,
    Frame,
    FrameResult,
    ImageFrame,
    ModelInfo,
    PersonResult,
    Progress,
    ReadyStatus,
    StreamInfo,
    Summary,
    Work,
)
from service.errors import UnknownModel, UnknownStream

TOY_DETECTOR = ModelInfo("hrnet-toy", "keypoint_detector", "toy", "random", 1, 1, "coco", "cpu", True, False)
TOY_MODEL = ModelInfo("toy", "toy", "1", "random", 1, 1, "h36m", "cpu", False, True)


def toy_result(frame: Frame) -> FrameResult:
    if isinstance(frame, ImageFrame):
        level = float(np.asarray(decode_image(frame.image), dtype=np.float32).mean())
        xy = np.full((NUM_JOINTS, 2), level, dtype=np.float32)
    else:
        xy = np.asarray(frame.keypoints, dtype=np.float32)
    z = np.full((NUM_JOINTS, 1), frame.frame_index / 1000.0, dtype=np.float32)
    person = PersonResult(
        track_id=0,
        box=np.array([0, 0, 10, 10], dtype=np.float32),
        box_score=1.0,
        keypoints_2d=xy,
        keypoint_scores=np.ones(NUM_JOINTS, dtype=np.float32),
        keypoints_3d=np.concatenate([xy / 1000.0, z], axis=1).astype(np.float32),
    )
    return FrameResult(frame.frame_index, frame.timestamp_s, [person])


class ToyEngine:
    def __init__(self, name: str = "toy", delay_s: float = 0.0) -> None:
        self.name = name
        self.delay_s = delay_s
        self.calls = 0
        self.lookups = 0  # get_stream calls
        self.frames_pushed = 0
        self.streams: dict[str, StreamInfo] = {}
        self.closed = False

    def _model(self, options: EstimateOptions) -> ModelInfo:
        if options.model not in (None, "toy"):
            raise UnknownModel(f"model {options.model!r} is not served here (served: toy)")
        return TOY_MODEL

    async def submit(self, work: Work) -> AsyncGenerator[Progress]:
        """A private run answers at once (an encoded clip decodes as in the engine); stream frames answer
        themselves, a chunk per call, and a summary names the stream's model."""
        self.calls += 1
        if work.stream is None:
            info = self._model(work.options)
            await asyncio.sleep(self.delay_s)
            async with clip_frames(work.frames, None) as (source, _):
                frames = [toy_result(frame) async for frame in source]
            timings = {"toy": 1.0}
            if isinstance(work.frames, Sequence) and any(isinstance(f, ImageFrame) for f in work.frames):
                timings["decode"] = 0.5  # as the engine's decode stage reports it
            yield Progress(frames, len(frames), Summary(info, BoxSource.WHOLE_FRAME, timings))
            return
        taken = 0
        size = work.chunk_frames or (len(work.frames) if isinstance(work.frames, Sequence) else 1)
        async with positioned(work.frames, None, max(1, size)) as (chunks, _):
            async for chunk, taken in chunks:
                yield Progress([r for frame in chunk for r in await self.toy_push(work.stream, frame)], taken)
        self._stream(work.stream)
        tail = await self.close_stream(work.stream) if work.close else []
        yield Progress(tail, taken, Summary(TOY_MODEL, BoxSource.WHOLE_FRAME, {"toy": 1.0}))

    async def open_stream(self, options: EstimateOptions, stream_id: str | None = None) -> StreamInfo:
        self.calls += 1
        info = self._model(options)
        sid = stream_id or f"toy-stream-{len(self.streams):08d}"
        self.streams[sid] = StreamInfo(sid, info.name, options.mode, 0, 0)
        return self.streams[sid]

    async def toy_push(self, stream_id: str, frame: Frame) -> list[FrameResult]:
        info = self._stream(stream_id)
        await asyncio.sleep(self.delay_s)
        self.frames_pushed += 1
        self.streams[stream_id] = StreamInfo(
            stream_id, info.model, info.mode, info.frames_received + 1, info.frames_emitted + 1
        )
        return [toy_result(frame)]

    async def close_stream(self, stream_id: str) -> list[FrameResult]:
        self._stream(stream_id)
        del self.streams[stream_id]
        return []

    async def get_stream(self, stream_id: str) -> StreamInfo:
        self.lookups += 1
        return self._stream(stream_id)

    def _stream(self, stream_id: str) -> StreamInfo:
        if stream_id not in self.streams:
            raise UnknownStream(f"no stream {stream_id!r}")
        return self.streams[stream_id]

    async def models(self) -> list[ModelInfo]:
        return [TOY_MODEL]

    async def components(self) -> list[ModelInfo]:
        return [TOY_DETECTOR]

    async def ready(self) -> ReadyStatus:
        return ReadyStatus(True, {"engine": self.name})

    async def aclose(self) -> None:
        self.closed = True
