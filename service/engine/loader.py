"""Assembly of the in-process engine, in one place: lifters, detector, person boxes, frame buffer, warm-up.

One random-weights policy for every network (:func:`checkpoint_or_random`): a configured checkpoint is loaded;
without one the network gets random weights only when ``settings.allow_random_weights`` (said loudly in the log
and in ``/readyz``), else loading fails naming the setting. The detector is the one exception to failing: without
weights it is left out (only 2D-keypoint requests are served) unless a CA-PF model needs it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

import numpy as np
import torch

from model.capf import CAPF_PRESETS, CAPFLifter
from model.capf_temporal import CAPFTemporal, CAPFTemporalConfig
from model.checkpoints.capf import build_capf_temporal, load_capf_lifter
from model.checkpoints.common import CheckpointError, sha256_of_file
from model.checkpoints.hrnet import load_detector
from model.checkpoints.pstmo import load_pstmo_checkpoint
from model.hrnet import HRNET_PRESETS
from model.pstmo import PSTMO, PSTMO_PRESETS
from service.config import CommonSettings, LifterKind, ModelSpec
from service.engine.detector import TopDownDetector
from service.engine.framebuffer import FrameBuffer, MemoryFrameBuffer
from service.engine.framebuffer.redis import RedisFrameBuffer
from service.engine.hrnet_onnx import use_onnx_backend
from service.engine.lifters import CAPFLifterServed, PSTMOLifter, ServedLifter
from service.engine.onnx_cache import ExportCache, default_cache_dir, resolved_backend
from service.engine.person_boxes import DetectorFamily, OnnxPersonDetector, PersonBoxFinder
from service.engine.pipeline import Pipeline
from service.engine.pstmo_onnx import OnnxPSTMO
from service.engine.random_onnx import RANDOM_ONNX, random_onnx
from service.engine.rtmpose import KeypointDetector, RTMPoseDetector
from service.engine.stages import Models
from service.engine.types import ModelInfo
from service.errors import Unavailable
from service.metrics import Metrics
from service.startup import loading_thread
from service.weights.store import weights_dir

log = logging.getLogger(__name__)
_C = TypeVar("_C")


RANDOM: Final = "random"
"""``weights`` of a network serving random weights (else the checkpoint's sha256)."""


def checkpoint_or_random(what: str, checkpoint: Path | None, setting: str, settings: CommonSettings) -> Path | None:
    """The checkpoint file to load for ``what`` (e.g. ``model 'capf'``), or None for random weights — only when
    ``settings.allow_random_weights``, and said loudly. Raises Unavailable naming ``setting`` otherwise."""
    if checkpoint is not None and checkpoint.is_file():
        return checkpoint
    where = f"checkpoint {checkpoint} not found" if checkpoint else "no checkpoint configured"
    if not settings.allow_random_weights:
        raise Unavailable(
            f"{what}: {where} — set {setting}, or pass --allow-random-weights "
            "(POSE3D_ALLOW_RANDOM_WEIGHTS=true) to serve it with random weights"
        )
    log.warning("%s serves RANDOM WEIGHTS (%s): its outputs are meaningless", what, where)
    return None


def onnx_or_random(what: str, onnx: Path, settings: CommonSettings) -> tuple[Path, bool]:
    """The ONNX file to run for ``what``, and whether it is a random-weight stand-in: a catalogue name that is
    not installed (the settings keep it as a name only when ``settings.allow_random_weights``) becomes its
    architecture with random weights (:func:`~service.engine.random_onnx.random_onnx`)."""
    if onnx.is_file() or not settings.allow_random_weights or str(onnx) not in RANDOM_ONNX:
        return onnx, False
    return random_onnx(what, str(onnx), weights_dir(settings.weights_dir)), True


def weights_detail(weights: str) -> str:
    """How ``/readyz`` names a network's weights."""
    return "RANDOM weights" if weights == RANDOM else f"weights sha256 {weights}"


_M = TypeVar("_M", bound=torch.nn.Module)


def _random_model(name: str, factory: Callable[[], _M]) -> _M:
    """A model with random weights, the same in every process (seeded by ``name``): ``+0.02·randn`` on top of its
    initialisation, as the conformance vectors do, so parts initialised to zero still depend on the input."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(name.encode()))  # every worker builds the same random weights
        model = factory()
        with torch.no_grad():
            for param in model.parameters():
                param.add_(0.02 * torch.randn_like(param))
    return model.eval()


def _sources(presets: Mapping[str, _C], name: str, spec: ModelSpec, settings: CommonSettings) -> tuple[_C, Path | None]:
    """Model ``name``'s architecture preset and checkpoint (None: random weights). Raises Unavailable."""
    if spec.arch not in presets:
        raise Unavailable(f"model {name!r}: unknown architecture {spec.arch!r} (known: {', '.join(presets)})")
    checkpoint = checkpoint_or_random(f"model {name!r}", spec.checkpoint, f"models.{name}.checkpoint", settings)
    return presets[spec.arch], checkpoint


@contextmanager
def _loading(what: str) -> Iterator[None]:
    """Raise a CheckpointError inside as Unavailable naming ``what`` (``model 'capf'``, ``detector``)."""
    try:
        yield
    except CheckpointError as e:
        raise Unavailable(f"{what}: {e}") from e


def build_pstmo(name: str, spec: ModelSpec, settings: CommonSettings, device: torch.device) -> ServedLifter:
    cfg, path = _sources(PSTMO_PRESETS, name, spec, settings)
    if path is None:
        model = _random_model(name, lambda: PSTMO(cfg))
    else:
        with _loading(f"model {name!r}"):
            model = load_pstmo_checkpoint(path, cfg)
    lifter = PSTMOLifter(name, spec, RANDOM if path is None else sha256_of_file(path), device, model)
    if resolved_backend(spec.backend, device, settings.half_precision and device.type == "cuda") == "onnx":
        use_onnx_lifter(lifter, settings)
    return lifter


def use_onnx_lifter(lifter: PSTMOLifter, settings: CommonSettings) -> None:
    """Run ``lifter`` on ONNX Runtime (``models.<name>.backend = "onnx"``), its graph from the export cache,
    with ``engine.torch_threads`` intra-op threads (0 = torch's thread count). Raises Unavailable off the CPU."""
    if lifter.device.type != "cpu":
        raise Unavailable(f"model {lifter.name!r}: backend 'onnx' runs on the CPU (device=cpu)")
    threads = settings.engine.torch_threads or torch.get_num_threads()
    cached = OnnxPSTMO.from_cache(lifter.model, export_cache(settings), lifter.spec.arch, threads)
    lifter.onnx = cached.value
    lifter.backend = cached.origin
    log.info("model %r: %s", lifter.name, lifter.backend)


def export_cache(settings: CommonSettings) -> ExportCache:
    """The export cache of ``detector.onnx_cache_dir`` (default: :func:`default_cache_dir`)."""
    return ExportCache(settings.detector.onnx_cache_dir or default_cache_dir(os.environ))


def build_capf(name: str, spec: ModelSpec, settings: CommonSettings, device: torch.device) -> ServedLifter:
    """CA-PF single-frame, or temporal (``LifterKind.CAPF_TEMPORAL``: the trunk and its temporal head)."""
    cfg, path = _sources(CAPF_PRESETS, name, spec, settings)
    if spec.kind is LifterKind.CAPF:
        if path is None:
            return CAPFLifterServed(name, spec, RANDOM, device, _random_model(name, lambda: CAPFLifter(cfg)), None)
        trunk = CAPFLifter(cfg)
        with _loading(f"model {name!r}"):
            load_capf_lifter(path, trunk)
        return CAPFLifterServed(name, spec, sha256_of_file(path), device, trunk, None)
    if path is None:
        model = _random_model(name, lambda: CAPFTemporal(cfg, CAPFTemporalConfig(frames=spec.frames)))
        return CAPFLifterServed(name, spec, RANDOM, device, model.trunk, model)
    with _loading(f"model {name!r}"):
        model, head_loaded = build_capf_temporal(path, spec.frames)
    weights = sha256_of_file(path)
    if not head_loaded:
        model.init_temporal_from_trunk()
        log.warning("model %r: no trained temporal head exists; serving the centre-frame warm start", name)
        weights = f"{weights}+untrained-temporal-head"
    return CAPFLifterServed(name, spec, weights, device, model.trunk, model.eval())


LifterBuilder = Callable[[str, ModelSpec, CommonSettings, torch.device], ServedLifter]

LIFTER_BUILDERS: Final[Mapping[LifterKind, LifterBuilder]] = {
    LifterKind.PSTMO: build_pstmo,
    LifterKind.CAPF: build_capf,
    LifterKind.CAPF_TEMPORAL: build_capf,
}


def build_lifters(settings: CommonSettings, device: torch.device) -> dict[str, ServedLifter]:
    """Every model of ``settings.models``, loaded (or random where allowed). Raises Unavailable naming the model."""
    return {name: LIFTER_BUILDERS[spec.kind](name, spec, settings, device) for name, spec in settings.models.items()}


@dataclass
class Report:
    """What ``/readyz`` (``detail``: component → state) and ``/v1/models`` (``components``) say about the
    loaded networks besides the lifters."""

    device: str
    detail: dict[str, str] = field(default_factory=dict)
    components: dict[str, ModelInfo] = field(default_factory=dict)

    def component(self, kind: str, name: str, version: str, weights: str) -> None:
        """Record the keypoint (on the engine's device) or person detector (ONNX Runtime, CPU)."""
        device = self.device if kind == "keypoint_detector" else "cpu"
        self.components[kind] = ModelInfo(name, kind, version, weights, 1, 1, "coco", device, True, False)


def frame_buffer(settings: CommonSettings) -> FrameBuffer:
    """The frame buffer ``settings`` name: Redis (shared by every worker) when ``redis_url`` is set, else memory."""
    eng = settings.engine
    if settings.redis_url:
        return RedisFrameBuffer(settings.redis_url, eng.stream_ttl_s, known_streams=eng.max_streams)
    return MemoryFrameBuffer(eng.max_streams, eng.stream_ttl_s)


async def load_engine(
    settings: CommonSettings, metrics: Metrics, buffer: FrameBuffer | None = None, report: Report | None = None
) -> Pipeline:
    """The pipeline over everything ``settings`` names, loaded and warmed up (``buffer``: this frame buffer
    instead of the one the settings name; ``report``: filled with what was loaded, as it is loaded). Raises
    Unavailable naming what failed."""
    report = report if report is not None else Report(settings.device.value)
    device = torch.device(settings.device.value)
    if device.type == "cuda" and not torch.cuda.is_available():  # torch's own answer is an AssertionError
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
        raise Unavailable(
            f"device = cuda, but PyTorch sees no CUDA GPU ({build}): set device = cpu (POSE3D_DEVICE=cpu), or run "
            "where a GPU and its driver are visible"
        )
    lifters = await loading_thread(build_lifters, settings, device)
    needs_features = any(lifter.needs_image for lifter in lifters.values())
    if settings.detector.family == "hrnet":  # RTMPose refuses CA-PF by name in build_rtmpose_detector
        check_feature_channels(lifters, settings.detector.arch)
    detector = await loading_thread(build_detector, settings, needs_features, report)
    finder = await loading_thread(build_box_finder, settings, report)
    pipeline = Pipeline(settings, metrics, Models(lifters, detector, finder), buffer or frame_buffer(settings))
    try:
        await warm_up(pipeline, settings.engine.torch_threads, needs_features)
    except BaseException:
        await pipeline.aclose()
        if buffer is None:
            await pipeline.buffer.aclose()
        raise
    for name, lifter in lifters.items():
        report.detail[f"model:{name}"] = weights_detail(lifter.weights)
        if isinstance(lifter, PSTMOLifter) and lifter.onnx is not None:  # as detector_backend: only when not torch
            report.detail[f"model:{name}:backend"] = lifter.backend
    return pipeline


async def warm_up(pipeline: Pipeline, torch_threads: int, features: bool) -> None:
    """Set the inference thread's torch threads and run every model once on it (lazy initialisation paid now)."""
    loop = asyncio.get_running_loop()
    if torch_threads:
        torch.set_num_threads(torch_threads)
        await loop.run_in_executor(pipeline.infer_pool, torch.set_num_threads, torch_threads)
    for lifter in pipeline.lifters.values():
        await loop.run_in_executor(pipeline.infer_pool, lifter.warmup)
    if pipeline.detector is not None:
        await loop.run_in_executor(pipeline.infer_pool, _warm_detector, pipeline.detector, features)


def _warm_detector(detector: KeypointDetector, features: bool) -> None:
    image = np.zeros((64, 48, 3), np.uint8)
    box = np.array([[0.0, 0.0, 48.0, 64.0]], np.float32)
    detector.detect([image], [box], [np.ones(1, np.float32)], flip_test=True, flip_features=features)


def build_detector(settings: CommonSettings, needs_features: bool, report: Report) -> KeypointDetector | None:
    """The 2D keypoint detector ``settings.detector`` names (RTMPose through ONNX Runtime, or HRNet), or None
    when HRNet has no weights and random ones are refused (and no CA-PF model needs features)."""
    det = settings.detector
    if det.family == "rtmpose":
        return build_rtmpose_detector(settings, needs_features, report)
    if det.arch not in HRNET_PRESETS:
        raise Unavailable(f"detector: unknown HRNet preset {det.arch!r} (known: {', '.join(HRNET_PRESETS)})")
    try:
        checkpoint = checkpoint_or_random("the 2D detector", det.checkpoint, "detector.checkpoint", settings)
    except Unavailable as refused:
        if needs_features:
            raise Unavailable(f"{refused.detail} (CA-PF models need the detector)") from None
        report.detail["detector"] = f"unavailable: {refused.detail}"
        log.warning("no 2D detector: %s; only 2D-keypoint requests can be served", refused.detail)
        return None
    return _hrnet(settings, checkpoint, needs_features, report)


def build_rtmpose_detector(settings: CommonSettings, needs_features: bool, report: Report) -> RTMPoseDetector:
    """RTMPose (``detector.family = "rtmpose"``) on ``detector.rtmpose_threads`` onnxruntime threads (0: the
    engine's torch threads).

    Raises:
        Unavailable: a served model needs HRNet feature maps (CA-PF), or ``detector.rtmpose_onnx`` is unset,
            missing or not an RTMPose ONNX (random weights stand in only for a catalogue name, when allowed).
    """
    det = settings.detector
    if needs_features:
        raise Unavailable(
            'detector.family = "rtmpose" gives 2D keypoints only, but a served CA-PF model needs HRNet feature '
            'maps: set detector.family = "hrnet", or serve only models that take 2D keypoints (P-STMO)'
        )
    if det.rtmpose_onnx is None:
        raise Unavailable(
            'detector.family = "rtmpose" needs detector.rtmpose_onnx: an RTMPose ONNX file or a catalogue name '
            '(`pose3d weights fetch rtmpose-m`, then rtmpose_onnx = "rtmpose-m")'
        )
    onnx, random = onnx_or_random("the 2D detector (RTMPose)", det.rtmpose_onnx, settings)
    with _loading("detector.rtmpose_onnx"):
        rtm = RTMPoseDetector(onnx, intra_op_threads=det.rtmpose_threads or settings.engine.torch_threads)
    digest = RANDOM if random else sha256_of_file(rtm.path)
    report.detail["detector"] = f"rtmpose {rtm.path.name} weights sha256 {digest}"
    report.component("keypoint_detector", "rtmpose", rtm.path.name, digest)
    return rtm


def _hrnet(settings: CommonSettings, checkpoint: Path | None, needs_features: bool, report: Report) -> TopDownDetector:
    det = settings.detector
    with _loading("detector"):
        net = load_detector(HRNET_PRESETS[det.arch], checkpoint, det.backbone_checkpoint, seed=zlib.crc32(b"detector"))
    weights = sha256_of_file(checkpoint) if checkpoint is not None else RANDOM
    report.detail["detector"] = weights_detail(weights)
    name = f"hrnet-{det.arch}" if det.arch.startswith("w") else det.arch
    report.component("keypoint_detector", name, det.arch, weights)
    device = torch.device(settings.device.value)
    half = settings.half_precision and device.type == "cuda"
    onnx = resolved_backend(det.backend, device, half) == "onnx"
    # the ONNX backend replaces the torch network: no folding or channels-last copy to build first
    fold, channels_last = (False, False) if onnx else (det.fold_batch_norms, det.channels_last)
    detector = TopDownDetector(net, device, half, needs_features, channels_last=channels_last, fold_batch_norms=fold)
    if onnx:
        source = det.onnx_path or export_cache(settings)
        origin = use_onnx_backend(detector, net, source, settings.engine.torch_threads, name=f"hrnet-{det.arch}")
        report.detail["detector_backend"] = origin
    return detector


def build_box_finder(settings: CommonSettings, report: Report) -> PersonBoxFinder:
    """Person boxes: the ONNX person detector ``settings.detector`` names, else client boxes or the whole frame."""
    det = settings.detector
    if det.person_detector_onnx is None:
        return PersonBoxFinder(None)
    path, random = onnx_or_random("the person detector", det.person_detector_onnx, settings)
    with _loading("person detector"):
        onnx = OnnxPersonDetector(
            path,
            family=DetectorFamily(det.person_detector_family),
            score_threshold=det.person_score_threshold,
            nms_iou=det.person_nms_iou,
        )
    digest = RANDOM if random else sha256_of_file(path)
    report.component("person_detector", det.person_detector_family, path.name, digest)
    if random:
        report.detail["person_detector"] = weights_detail(RANDOM)
    return PersonBoxFinder(onnx)


def check_feature_channels(lifters: dict[str, ServedLifter], detector_arch: str) -> None:
    """CA-PF samples the detector's own feature maps: refuse at start-up a lifter built for other widths
    (e.g. ``capf-w48`` behind a ``w32`` detector) instead of failing every request."""
    preset = HRNET_PRESETS.get(detector_arch)
    if preset is None:
        return  # build_detector names the unknown preset
    for name, lifter in lifters.items():
        if isinstance(lifter, CAPFLifterServed):
            wanted = tuple(lifter.trunk.cfg.feature_channels)
            if wanted != tuple(preset.feature_channels):
                raise Unavailable(
                    f"model {name!r} samples feature maps of {wanted} channels but the detector "
                    f"{detector_arch!r} produces {tuple(preset.feature_channels)}: pair capf-w32 with w32, "
                    "capf-w48 with w48"
                )
