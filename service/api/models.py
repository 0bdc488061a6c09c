"""Which served model answers: by name, the default per input kind, the one that lifts keypoints alone."""

from __future__ import annotations

from service.config import GatewaySettings, InputKind
from service.engine.types import BoxSource, EngineClient, EstimateOptions, ModelInfo
from service.errors import InvalidInput, UnknownModel


async def resolve_model(engine: EngineClient, name: str) -> ModelInfo:
    """The served model called ``name``; UnknownModel (404) naming the served ones otherwise."""
    models = await engine.models()
    for info in models:
        if info.name == name:
            return info
    served = ", ".join(sorted(m.name for m in models)) or "none"
    raise UnknownModel(f"model {name!r} is not served here (served: {served})")


async def keypoints_model(engine: EngineClient, settings: GatewaySettings, name: str | None) -> ModelInfo:
    """The model for 2D keypoint input: ``name``, else the configured default, else any model that
    needs no image. A model that needs image features (CA-PF) refuses keypoints with 422."""
    if name is not None:
        info: ModelInfo | None = await resolve_model(engine, name)
    else:
        rank = {settings.default_clip_model: 1, settings.default_model(InputKind.KEYPOINTS): 0}  # then by name
        usable = (m for m in await engine.models() if not m.needs_image)
        info = min(usable, key=lambda m: (rank.get(m.name, 2), m.name), default=None)
    if info is None:
        raise InvalidInput("no served model lifts 2D keypoints alone (every served model needs the image)")
    if info.needs_image:
        raise InvalidInput(f"model {info.name!r} ({info.kind}) needs the image itself, not 2D keypoints")
    return info


def box_source_for(options: EstimateOptions, settings: GatewaySettings) -> BoxSource:
    """Where image frames' boxes come from under ``options`` (the engine's own rule, stated for streams)."""
    if options.boxes is not None:
        return BoxSource.CLIENT
    if settings.detector.person_detector_onnx is not None:
        return BoxSource.DETECTOR
    return BoxSource.WHOLE_FRAME
