"""InProcessEngine: the EngineClient protocol served by the pipeline in this process.

``await build_engine(settings, metrics)`` loads the models named in ``settings.models`` (random weights
only when ``settings.allow_random_weights``), the detector, the frame buffer (Redis when
``settings.redis_url`` is set, else in memory), warms every model up, and returns the started engine.
``InProcessEngine(settings, metrics)`` + ``await start()`` does the same in two steps (``ready()`` says
``loading`` in between); ``start()`` is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import numpy as np
import torch

from model.checkpoints.common import CheckpointError, sha256_of_file
from model.checkpoints.hrnet import load_detector
from model.hrnet import HRNET_PRESETS
from service.config import CommonSettings
from service.engine.detector import TopDownDetector
from service.engine.door import admit
from service.engine.framebuffer import FrameBuffer, MemoryFrameBuffer, StreamMeta
from service.engine.framebuffer.redis import RedisFrameBuffer
from service.engine.hrnet_onnx import use_onnx_backend
from service.engine.lifters import RANDOM, CAPFLifterServed, ServedLifter, build_lifters
from service.engine.person_boxes import PersonBoxFinder
from service.engine.person_detector_onnx import DetectorFamily, OnnxPersonDetector
from service.engine.pipeline import FrameOptions, Pipeline, Timings, async_frames
from service.engine.rtmpose import KeypointDetector, build_rtmpose_detector
from service.engine.streams import StreamReopened
from service.engine.types import (
    ClipRequest,
    ClipResult,
    EstimateOptions,
    EstimateRequest,
    EstimateResult,
    Frame,
    FrameResult,
    ImageFrame,
    KeypointFrame,
    ModelInfo,
    ReadyStatus,
    StreamInfo,
)
from service.engine.world import StreamWorld, place_clip, world_to_json
from service.errors import InvalidInput, Unavailable, UnknownModel
from service.metrics import Metrics

log = logging.getLogger(__name__)

STREAM_ID: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
META_CACHE_SIZE: Final = 10_000
_T = TypeVar("_T")


class InProcessEngine:
    """The engine in this process (implements :class:`~service.engine.types.EngineClient`).

    Args:
        settings: the process's settings (models, detector, engine knobs, Redis URL).
        metrics: where the engine's metrics go (shared with the gateway in the embedded service).
        buffer: a frame buffer to use instead of the one the settings name (tests, benchmarks).
    """

    def __init__(self, settings: CommonSettings, metrics: Metrics, buffer: FrameBuffer | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._buffer = buffer
        self._pipeline: Pipeline | None = None
        self._start_lock = asyncio.Lock()
        self._detail: dict[str, str] = {"engine": "loading"}
        self._components: dict[str, ModelInfo] = {}
        self._metas: OrderedDict[str, StreamMeta] = OrderedDict()
        self._world = StreamWorld(settings.engine.max_streams)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            raise Unavailable("the engine is still loading its models")
        return self._pipeline

    async def start(self) -> None:
        """Load models, detector and frame buffer, warm up; idempotent. Raises Unavailable naming what failed."""
        async with self._start_lock:
            if self._pipeline is not None:
                return
            s = self.settings
            device = torch.device(s.device.value)
            lifters = await asyncio.to_thread(build_lifters, s, device)
            needs_features = any(lifter.needs_image for lifter in lifters.values())
            if s.detector.family == "hrnet":  # RTMPose refuses CA-PF by name in _build_detector
                _check_feature_channels(lifters, s.detector.arch)
            detector = await asyncio.to_thread(self._build_detector, device, needs_features)
            finder = await asyncio.to_thread(self._build_box_finder)
            buffer = self._buffer or (
                RedisFrameBuffer(s.redis_url, s.engine.stream_ttl_s)
                if s.redis_url
                else MemoryFrameBuffer(s.engine.max_streams, s.engine.stream_ttl_s)
            )
            self._buffer = buffer
            pipeline = Pipeline(s, self.metrics, lifters, detector, finder, buffer)
            loop = asyncio.get_running_loop()
            if s.engine.torch_threads:
                torch.set_num_threads(s.engine.torch_threads)
                await loop.run_in_executor(pipeline.infer_pool, torch.set_num_threads, s.engine.torch_threads)
            for lifter in lifters.values():
                await loop.run_in_executor(pipeline.infer_pool, lifter.warmup)
            if detector is not None:
                await loop.run_in_executor(pipeline.infer_pool, _warm_detector, detector, needs_features)
            self._pipeline = pipeline
            for name, lifter in lifters.items():
                self._detail[f"model:{name}"] = (
                    "RANDOM weights" if lifter.weights == RANDOM else f"weights sha256 {lifter.weights}"
                )
            self._detail["engine"] = "started"
            self.metrics.worker_up.set(1)
            if not await buffer.ping():
                log.warning(
                    "the frame buffer's Redis does not answer: streams and clips fail and /readyz reports not ready "
                    "until it does — check redis_url (POSE3D_REDIS_URL) or start redis-server"
                )

    def _build_detector(self, device: torch.device, needs_features: bool) -> KeypointDetector | None:
        det = self.settings.detector
        if det.family == "rtmpose":
            rtm = build_rtmpose_detector(det, needs_features, self.settings.engine.torch_threads)
            self._detail["detector"] = f"rtmpose {rtm.path.name} weights sha256 {sha256_of_file(rtm.path)}"
            self._component("keypoint_detector", "rtmpose", rtm.path.name, sha256_of_file(rtm.path))
            return rtm
        if det.arch not in HRNET_PRESETS:
            raise Unavailable(f"detector: unknown HRNet preset {det.arch!r} (known: {', '.join(HRNET_PRESETS)})")
        checkpoint = det.checkpoint if det.checkpoint is not None and det.checkpoint.is_file() else None
        if checkpoint is None and not self.settings.allow_random_weights:
            reason = (
                f"detector checkpoint {det.checkpoint} not found — set detector.checkpoint, or pass "
                "--allow-random-weights (POSE3D_ALLOW_RANDOM_WEIGHTS=true) to use random weights"
            )
            if needs_features:
                raise Unavailable(reason + " (CA-PF models need the detector)")
            self._detail["detector"] = f"unavailable: {reason}"
            log.warning("no 2D detector: %s; only 2D-keypoint requests can be served", reason)
            return None
        try:
            net = load_detector(
                HRNET_PRESETS[det.arch], checkpoint, det.backbone_checkpoint, seed=zlib.crc32(b"detector")
            )
        except CheckpointError as e:
            raise Unavailable(f"detector: {e}") from e
        weights = sha256_of_file(checkpoint) if checkpoint is not None else RANDOM
        if weights == RANDOM:
            log.warning("THE 2D DETECTOR SERVES RANDOM WEIGHTS (%s): keypoints are meaningless", det.arch)
        self._detail["detector"] = "RANDOM weights" if weights == RANDOM else f"weights sha256 {weights}"
        self._component(
            "keypoint_detector", f"hrnet-{det.arch}" if det.arch.startswith("w") else det.arch, det.arch, weights
        )
        half = self.settings.half_precision and device.type == "cuda"
        detector = TopDownDetector(
            net, device, half, needs_features, channels_last=det.channels_last, fold_batch_norms=det.fold_batch_norms
        )
        if det.backend == "onnx":
            use_onnx_backend(detector, net, det.onnx_path, self.settings.engine.torch_threads)
        return detector

    def _build_box_finder(self) -> PersonBoxFinder:
        det = self.settings.detector
        if det.person_detector_onnx is None:
            return PersonBoxFinder(None)
        try:
            onnx = OnnxPersonDetector(
                det.person_detector_onnx,
                family=DetectorFamily(det.person_detector_family),
                score_threshold=det.person_score_threshold,
                nms_iou=det.person_nms_iou,
            )
        except CheckpointError as e:
            raise Unavailable(f"person detector: {e}") from e
        family = det.person_detector_family
        self._component(
            "person_detector", family, det.person_detector_onnx.name, sha256_of_file(det.person_detector_onnx)
        )
        return PersonBoxFinder(onnx)

    async def _count_streams(self, cheap_only: bool) -> None:
        """Set ``pose3d_active_streams`` from the frame buffer: after every open/close for the in-memory buffer;
        for Redis (shared by all workers, counted with SCAN) only when ``ready()`` is probed."""
        if self._buffer is None or (cheap_only and self._buffer.shared):
            return
        self.metrics.active_streams.set(await self._buffer.count())

    async def ready(self) -> ReadyStatus:
        detail = dict(self._detail)
        ok = self._pipeline is not None
        if self._buffer is not None:
            reachable = await self._buffer.ping()
            detail["frame_buffer"] = f"{self._buffer.kind} {'ok' if reachable else 'unreachable'}"
            ok = ok and reachable
            if reachable:
                await self._count_streams(cheap_only=False)
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                name = f"cuda:{index}"
                self.metrics.gpu_memory_allocated.labels(device=name).set(torch.cuda.memory_allocated(index))
                self.metrics.gpu_memory_reserved.labels(device=name).set(torch.cuda.memory_reserved(index))
        return ReadyStatus(ready=ok, detail=detail)

    async def aclose(self) -> None:
        if self._pipeline is not None:
            await self._pipeline.aclose()
            self._pipeline = None
        if self._buffer is not None:
            await self._buffer.aclose()
        self._detail["engine"] = "stopped"
        self.metrics.worker_up.set(0)

    async def models(self) -> list[ModelInfo]:
        return [lifter.info for lifter in self.pipeline.lifters.values()]

    async def components(self) -> list[ModelInfo]:
        return list(self._components.values())

    def _component(self, kind: str, name: str, version: str, weights: str) -> None:
        """Record the keypoint or person detector for ``components()`` (``/v1/models``)."""
        device = self.settings.device.value if kind == "keypoint_detector" else "cpu"
        self._components[kind] = ModelInfo(name, kind, version, weights, 1, 1, "coco", device, True, False)

    # -- requests --------------------------------------------------------------------------------

    def _lifter(self, name: str | None, frames: list[Frame] | None = None) -> ServedLifter:
        lifters = self.pipeline.lifters
        if name is None:
            name = self._default_model(frames)
        if name not in lifters:
            raise UnknownModel(f"unknown model {name!r}; served: {', '.join(sorted(lifters)) or 'none'}")
        return lifters[name]

    def _default_model(self, frames: list[Frame] | None) -> str:
        s = self.settings
        if frames and all(isinstance(f, KeypointFrame) for f in frames):
            chosen = getattr(s, "default_keypoints_model", None)
            return str(chosen) if chosen else s.default_clip_model
        if frames is not None and len(frames) == 1:
            return s.default_image_model
        return s.default_clip_model

    def _deadline(self, deadline: float | None) -> float:
        return deadline if deadline is not None else time.monotonic() + self.settings.engine.request_timeout_s

    async def estimate(self, request: EstimateRequest) -> EstimateResult:
        if not request.frames:
            raise InvalidInput("a request needs at least one frame")
        started = time.monotonic()
        lifter = self._lifter(request.options.model, request.frames)
        opts = _frame_options(request.options, lifter)
        timings = Timings()
        deadline = self._deadline(request.deadline)
        admit(self.pipeline, lifter, opts, *_frame_counts(request.frames), deadline)
        results, source = await self.pipeline.run_clip(
            request.frames, lifter, opts, request.options.mode, deadline, timings
        )
        results = place_clip(results, request.options.camera, request.options.smoothing)
        ms = timings.as_ms()
        ms["total"] = round((time.monotonic() - started) * 1000.0, 3)
        return EstimateResult(request.request_id, lifter.info, source, results, ms)

    async def estimate_clip(self, request: ClipRequest) -> ClipResult:
        """The clip as a private stream, its frames pulled from ``request.frames`` at most
        ``Pipeline.streamed_look_ahead`` (one detector batch) ahead of the oldest frame not yet appended."""
        started = time.monotonic()
        pipeline = self.pipeline
        lifter = self._lifter(request.options.model)
        opts = _frame_options(request.options, lifter)
        timings = Timings()
        deadline = self._deadline(request.deadline)
        admit(pipeline, lifter, opts, 1, 0, deadline)  # its first frame (the clip is still being decoded)
        results, _ = await pipeline.run_clip(
            request.frames,
            lifter,
            opts,
            request.options.mode,
            deadline,
            timings,
            look_ahead=pipeline.streamed_look_ahead,
        )
        results = place_clip(results, request.options.camera, request.options.smoothing)
        ms = timings.as_ms()
        ms["total"] = round((time.monotonic() - started) * 1000.0, 3)
        return ClipResult(request.request_id, lifter.name, results, ms)

    async def open_stream(self, options: EstimateOptions, stream_id: str | None = None) -> StreamInfo:
        lifter = self._lifter(options.model)
        sid = stream_id if stream_id is not None else secrets.token_urlsafe(18)
        if not STREAM_ID.match(sid):
            raise InvalidInput("stream_id must be 1-128 characters of A-Z a-z 0-9 _ . : -")
        opts = _frame_options(options, lifter)
        world = world_to_json(options.camera, options.smoothing)
        meta = StreamMeta(sid, lifter.name, options.mode, opts.flip_test, opts.max_people, opts.boxes, world)
        await self.pipeline.buffer.create(meta)
        self._world.forget(sid)
        self._remember(meta)
        await self._count_streams(cheap_only=True)
        return StreamInfo(sid, lifter.name, options.mode, 0, 0)

    def _remember(self, meta: StreamMeta) -> None:
        self._metas[meta.stream_id] = meta
        self._metas.move_to_end(meta.stream_id)
        while len(self._metas) > META_CACHE_SIZE:
            self._metas.popitem(last=False)

    async def _meta(self, stream_id: str) -> StreamMeta:
        """A stream's (immutable) metadata: cached after the first look-up in the frame buffer. The cache may be
        stale (the stream closed and opened again elsewhere); appends check it (:class:`StreamReopened`)."""
        meta = self._metas.get(stream_id)
        if meta is None:
            meta = (await self.pipeline.buffer.state(stream_id)).meta
            self._remember(meta)
        return meta

    async def _on_stream(self, stream_id: str, step: Callable[[StreamMeta], Awaitable[_T]]) -> _T:
        """``step(meta)`` with the cached metadata, redone once with fresh metadata if the stream was opened
        again with other options since it was cached."""
        try:
            return await step(await self._meta(stream_id))
        except StreamReopened:
            self._metas.pop(stream_id, None)
            return await step(await self._meta(stream_id))

    async def push_frame(self, stream_id: str, frame: Frame, deadline: float | None = None) -> list[FrameResult]:
        pipeline = self.pipeline
        deadline = self._deadline(deadline)

        async def step(meta: StreamMeta) -> list[FrameResult]:
            lifter = self._lifter(meta.model)
            timings = Timings()
            opts = FrameOptions(meta.boxes, meta.max_people, meta.flip_test)
            admit(pipeline, lifter, opts, *_frame_counts([frame]), deadline)
            guide = pipeline.guide_at(pipeline.buffer, meta.stream_id, frame.frame_index)
            people, _ = await pipeline.prepare(frame, lifter, opts, deadline, timings, guide)
            emission = await pipeline.push(
                pipeline.buffer,
                meta,
                lifter,
                frame.frame_index,
                frame.timestamp_s,
                people,
                isinstance(frame, ImageFrame),
                deadline,
                timings,
            )
            results = await pipeline.lift_emission(lifter, emission, meta.mode, meta.flip_test, deadline, timings)
            return self._world.step(meta.stream_id, meta.world, results)

        return await self._on_stream(stream_id, step)

    async def push_frames(
        self, stream_id: str, frames: Sequence[Frame], deadline: float | None = None
    ) -> list[FrameResult]:
        if not frames:
            return []
        pipeline = self.pipeline
        deadline = self._deadline(deadline)

        async def step(meta: StreamMeta) -> list[FrameResult]:
            lifter = self._lifter(meta.model)
            opts = FrameOptions(meta.boxes, meta.max_people, meta.flip_test)
            admit(pipeline, lifter, opts, *_frame_counts(frames), deadline)
            results, _ = await pipeline.push_in_order(
                pipeline.buffer, meta, lifter, async_frames(frames), len(frames), deadline, Timings()
            )
            return self._world.step(meta.stream_id, meta.world, results)

        return await self._on_stream(stream_id, step)

    async def close_stream(self, stream_id: str) -> list[FrameResult]:
        pipeline = self.pipeline
        meta = (await pipeline.buffer.state(stream_id)).meta  # fresh: the flush is windowed by the stream's mode
        lifter = self._lifter(meta.model)
        async with pipeline.lock(stream_id):
            tail = await pipeline.buffer.flush(stream_id, lifter.window, meta.mode)
        results = await pipeline.lift_emission(lifter, tail, meta.mode, meta.flip_test, self._deadline(None), Timings())
        results = self._world.step(stream_id, meta.world, results, final=True)
        await pipeline.buffer.delete(stream_id)
        self._metas.pop(stream_id, None)
        await self._count_streams(cheap_only=True)
        return results

    async def get_stream(self, stream_id: str) -> StreamInfo:
        state = await self.pipeline.buffer.state(stream_id)
        m = state.meta
        return StreamInfo(m.stream_id, m.model, m.mode, state.frames_received, state.next_emit)


def _frame_counts(frames: Sequence[Frame]) -> tuple[int, int]:
    """``(images, keypoint frames)`` among ``frames`` (what admission asks of a request)."""
    images = sum(1 for f in frames if isinstance(f, ImageFrame))
    return images, len(frames) - images


def _frame_options(options: EstimateOptions, lifter: ServedLifter) -> FrameOptions:
    if options.max_people is not None and options.max_people < 1:
        raise InvalidInput("max_people must be at least 1")
    flip = lifter.spec.flip_test if options.flip_test is None else options.flip_test
    return FrameOptions(options.boxes, options.max_people, flip)


def _warm_detector(detector: KeypointDetector, features: bool) -> None:
    image = np.zeros((64, 48, 3), np.uint8)
    box = np.array([[0.0, 0.0, 48.0, 64.0]], np.float32)
    detector.detect([image], [box], [np.ones(1, np.float32)], flip_test=True, flip_features=features)


async def build_engine(settings: CommonSettings, metrics: Metrics) -> InProcessEngine:
    """Build and start (load + warm up) the in-process engine."""
    engine = InProcessEngine(settings, metrics)
    await engine.start()
    return engine


def _check_feature_channels(lifters: dict[str, ServedLifter], detector_arch: str) -> None:
    """CA-PF samples the detector's own feature maps: refuse at start-up a lifter built for other widths
    (e.g. ``capf-w48`` behind a ``w32`` detector) instead of failing every request."""
    preset = HRNET_PRESETS.get(detector_arch)
    if preset is None:
        return  # _build_detector names the unknown preset
    for name, lifter in lifters.items():
        if isinstance(lifter, CAPFLifterServed):
            wanted = tuple(lifter.trunk.cfg.feature_channels)
            if wanted != tuple(preset.feature_channels):
                raise Unavailable(
                    f"model {name!r} samples feature maps of {wanted} channels but the detector "
                    f"{detector_arch!r} produces {tuple(preset.feature_channels)}: pair capf-w32 with w32, "
                    "capf-w48 with w48"
                )
