"""What a job runs: its options and its frames, rebuilt from the staged input by whichever gateway runs it.

A clip job stages the uploaded file and its text fields, a keypoints job its JSON body; both are validated at
submission as ``POST /v1/pose3d`` validates them and parsed again here, so a resumed job runs with the options it
was accepted with. A clip is only probed here: its encoded bytes go to the engine, which decodes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from service.api.fields import media_options
from service.api.json_offload import parse_keypoints
from service.api.media import MediaKind, clip_limits, probe_clip
from service.config import GatewaySettings, LimitSettings
from service.engine.types import EncodedClip, EngineClient, EstimateOptions, KeypointFrame, Work
from service.engine.types import Progress as ClipProgress
from service.engine.work import push


@dataclass
class JobSource:
    """The frames of a job in order: 2D keypoint frames (``frame_index`` = position 0, 1, 2, ...), or an encoded
    clip the engine decodes (kept frame ``k`` is source frame ``k * every_nth``). ``total``: frames expected
    (a clip's header may be off)."""

    options: EstimateOptions
    total: int | None
    keypoints: Sequence[KeypointFrame] = field(default_factory=list)
    clip: EncodedClip | None = None

    def source_index(self, position: int) -> int:
        """The source frame index of the frame at stream ``position``."""
        return position if self.clip is None else self.clip.source_index(position)

    async def run(
        self, engine: EngineClient, stream_id: str, start: int, chunk_frames: int, chunk_timeout_s: float
    ) -> AsyncGenerator[ClipProgress]:
        """Push the frames from position ``start`` on into ``stream_id``, ``chunk_frames`` per engine call (a clip
        goes as its encoded bytes: the engine decodes it); yields each call's results and the frames seen so far.
        The last step counts every frame of the source."""
        if self.clip is not None:
            steps = engine.submit(
                Work(
                    stream_id,
                    replace(self.clip, start=start),
                    self.options,
                    stream=stream_id,
                    chunk_frames=chunk_frames,
                    chunk_timeout_s=chunk_timeout_s,
                )
            )
            async with contextlib.aclosing(steps):
                async for step in steps:
                    yield step
            return
        frames = self.keypoints
        for first in range(start, len(frames), chunk_frames):
            chunk = frames[first : first + chunk_frames]
            results = await push(engine, stream_id, chunk, time.monotonic() + chunk_timeout_s)
            yield ClipProgress(results, first + len(chunk))
        if start >= len(frames):
            yield ClipProgress([], len(frames))


async def open_source(kind: str, params: dict[str, Any], staged: bytes, settings: GatewaySettings) -> JobSource:
    """The job's frames and options from what was staged at submission."""
    model = str(params["model"])
    if kind == "keypoints":
        body, frames = await parse_keypoints(staged, settings)  # a large body in the helper process: the loop is free
        return JobSource(body.options(model), len(frames), keypoints=frames)
    return await clip_source(dict(params["fields"]), model, staged, MediaKind(params["media"]), settings.limits)


async def clip_source(
    fields: dict[str, str], model: str, data: bytes, media: MediaKind, limits: LimitSettings
) -> JobSource:
    """A clip's job source: its options from its form ``fields`` (422 on bad values), checked from its container
    header (the engine decodes it)."""
    options, every_nth = media_options(fields, limits)
    info = await asyncio.to_thread(probe_clip, data, media, limits, every_nth)
    count = info.frame_count
    total = None if count is None else -(-count // every_nth)
    clip = EncodedClip(data, media.value, clip_limits(limits), every_nth)
    return JobSource(replace(options, model=model), total, clip=clip)
