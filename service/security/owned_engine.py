"""The engine as a caller sees it: a stream belongs to the API key that opened it (claimed within its open-stream
quota); to any other key it is ``UnknownStream`` (404), as an id that never existed (docs/ownership-and-quotas.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from service.engine.types import (
    EngineClient,
    EstimateOptions,
    FrameResult,
    ModelInfo,
    Progress,
    ReadyStatus,
    StreamInfo,
    Work,
)
from service.errors import StreamFramesLost, UnknownStream
from service.security.disclosure import public_readiness
from service.security.guard import Security


class OwnedEngine:
    """``inner`` with ownership checks on every stream operation and readiness fit for the caller."""

    def __init__(self, inner: EngineClient, security: Security) -> None:
        self.inner = inner
        self.security = security

    async def _check(self, stream_id: str) -> None:
        if not await self.security.owns(stream_id):
            raise UnknownStream(f"stream {stream_id!r} does not exist or has expired")

    async def submit(self, work: Work) -> AsyncGenerator[Progress]:
        if work.stream is not None:
            await self._check(work.stream)
        try:
            async with contextlib.aclosing(self.inner.submit(work)) as steps:
                async for step in steps:
                    yield step
        except StreamFramesLost:  # the stream can never be answered again: its slot frees now
            if work.stream is not None and work.close:
                await self.security.release_stream(work.stream)
            raise
        if work.stream is not None and work.close:
            await self.security.release_stream(work.stream)

    async def open_stream(self, options: EstimateOptions, stream_id: str | None = None) -> StreamInfo:
        if stream_id is None:
            return await self.inner.open_stream(options, stream_id)
        await self.security.claim_stream(stream_id)
        try:
            return await self.inner.open_stream(options, stream_id)
        except BaseException:
            await self.security.release_stream(stream_id)
            raise

    async def close_stream(self, stream_id: str) -> list[FrameResult]:
        await self._check(stream_id)
        try:
            tail = await self.inner.close_stream(stream_id)
        except StreamFramesLost:  # closed for good without its tail (the engine forgot it): its slot frees now
            await self.security.release_stream(stream_id)
            raise
        await self.security.release_stream(stream_id)
        return tail

    async def get_stream(self, stream_id: str) -> StreamInfo:
        await self._check(stream_id)
        return await self.inner.get_stream(stream_id)

    async def models(self) -> list[ModelInfo]:
        return await self.inner.models()

    async def components(self) -> list[ModelInfo]:
        return await self.inner.components()

    async def ready(self) -> ReadyStatus:
        return public_readiness(await self.inner.ready(), full=self.security.may_see_topology())

    async def aclose(self) -> None:
        await self.inner.aclose()


def owned(engine: EngineClient, security: Security | None) -> EngineClient:
    """``engine`` wrapped once (wrapping an :class:`OwnedEngine` again returns it)."""
    if security is None or isinstance(engine, OwnedEngine):
        return engine
    return OwnedEngine(engine, security)


def unowned(engine: EngineClient) -> EngineClient:
    """``engine`` without the ownership layer, for a request's private stream (``in_private_stream``: opened, fed
    and closed by the one request, its id never told). It claims none of the key's open-stream slots — the rate
    bucket and the in-flight bound already bound requests; ``MAX_STREAMS`` bounds streams that outlive one — and no
    key owns it, so no key can address it."""
    return engine.inner if isinstance(engine, OwnedEngine) else engine
