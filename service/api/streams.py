"""Opening a stream, for REST and the WebSocket alike (gRPC's ``StreamEstimate`` takes its options as protobuf)."""

from __future__ import annotations

import secrets

from service.api.fields import random_weight_warnings, world_warnings
from service.api.models import resolve_model
from service.api.schemas import ModelRef, StreamOpened, StreamOpenRequest
from service.api.validation import check_boxes
from service.config import GatewaySettings, InputKind
from service.engine.types import EngineClient, EstimateOptions
from service.errors import InvalidInput


async def open_stream(engine: EngineClient, body: StreamOpenRequest, settings: GatewaySettings) -> StreamOpened:
    """Open a stream for ``body``'s model (default: the default clip model) and window ``mode``; its id is a
    ``secrets.token_urlsafe`` (unguessable), its state lives in the engine's frame buffer."""
    limits = settings.limits
    info = await resolve_model(engine, body.model or settings.default_model(InputKind.CLIP))
    boxes = check_boxes(body.boxes, limits) if body.boxes is not None else None
    if body.max_people is not None and body.max_people > limits.max_people:
        raise InvalidInput(f"max_people must be at most {limits.max_people}")
    camera, smoothing = body.world()
    options = EstimateOptions(
        model=info.name, boxes=boxes, flip_test=body.flip_test, max_people=body.max_people, mode=body.mode,
        camera=camera, smoothing=smoothing,
    )  # fmt: skip
    opened = await engine.open_stream(options, stream_id=secrets.token_urlsafe(24))
    return StreamOpened(
        stream_id=opened.stream_id,
        model=ModelRef.of(info),
        mode=opened.mode,
        expires_after_idle_s=settings.engine.stream_ttl_s,
        warnings=random_weight_warnings(info) + world_warnings(camera, []),
    )
