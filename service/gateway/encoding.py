"""Results as JSON bytes, made off the event loop: the one encoder of a frame result for REST, NDJSON and jobs.

Each frame is encoded on its own (one short call into pydantic-core) on a worker thread, so the loop gets the GIL
back between frames; a document is its head with the frames' bytes spliced in (docs/architecture.md, "Answers").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from model.joints import H36M_JOINT_NAMES
from service.api.fields import random_weight_warnings, world_warnings
from service.api.schemas import Frame, ModelRef, PoseResponse
from service.engine.types import BoxSource, FrameResult, ModelInfo
from service.geometry.camera import CameraSpec

FRAMES_MARKER = '"frames":[]'  # a head document's (empty) frame list: the encoded frames go in its place
CHUNK_FRAMES = 256  # frames per piece of an encoded document (about 0.5 MB)


def _same(index: int) -> int:
    return index


def encode_frames(results: Sequence[FrameResult], index: Callable[[int], int] = _same) -> list[bytes]:
    """One JSON document (the REST ``Frame`` schema) per result, in the order given; ``index`` maps an engine
    frame index to the source's (``every_nth``). CPU work: from the loop, use :func:`frames_json`."""
    return [Frame.of(r, frame_index=index(r.frame_index)).model_dump_json().encode() for r in results]


async def frames_json(results: Sequence[FrameResult], index: Callable[[int], int] = _same) -> list[bytes]:
    """:func:`encode_frames` on a worker thread: the event loop only waits."""
    if not results:
        return []
    return await asyncio.to_thread(encode_frames, results, index)


def document_chunks(head: PoseResponse, frames: Sequence[bytes], per_chunk: int = CHUNK_FRAMES) -> list[bytes]:
    """``head`` (its ``frames`` empty) as JSON with the encoded ``frames`` in place of its frame list, in pieces
    of ``per_chunk`` frames (so no single copy of a 40 MB answer holds the GIL): their concatenation is the
    document."""
    text = head.model_dump_json()
    at = text.index(FRAMES_MARKER) + len(FRAMES_MARKER) - 1
    chunks = [text[:at].encode()]
    for i in range(0, len(frames), per_chunk):
        chunks.append((b"," if i else b"") + b",".join(frames[i : i + per_chunk]))
    chunks.append(text[at:].encode())
    return chunks


def release(items: Sequence[Any]) -> None:
    """Drop the references in ``items`` (a list) one at a time, on a thread: freeing 20 000 frames at once is one
    C-level cascade of deallocations that holds the GIL (and the loop) for all of it; a ``pop`` at a time does not."""
    while isinstance(items, list) and items:
        items.pop()


def encode_answer(answer: PoseAnswer) -> list[bytes]:
    """``answer`` as JSON pieces, its frames then released here (a thread), not on the loop."""
    chunks = answer.to_chunks()
    release(answer.frames)
    return chunks


async def pieces(chunks: Sequence[bytes]) -> AsyncIterator[bytes]:
    """A response body piece by piece (``StreamingResponse``): each is written and drained before the next."""
    for chunk in chunks:
        yield chunk


@dataclass(frozen=True)
class PoseAnswer:
    """The answer of ``POST /v1/pose3d`` before it is encoded: who answered, the per-frame results (source
    order), stage timings (ms) and the camera asked for (for its warnings). Encode it on a worker thread."""

    request_id: str
    model: ModelInfo
    box_source: BoxSource
    frames: Sequence[FrameResult]
    timings_ms: dict[str, float]
    camera: CameraSpec | None

    def head(self) -> PoseResponse:
        """The document without its frames (warnings summarise every frame's)."""
        return PoseResponse(
            request_id=self.request_id,
            model=ModelRef.of(self.model),
            joint_names=list(H36M_JOINT_NAMES),
            box_source=self.box_source.value,
            frames=[],
            timings_ms={k: round(float(v), 3) for k, v in self.timings_ms.items()},
            warnings=random_weight_warnings(self.model) + world_warnings(self.camera, self.frames),
        )

    def to_chunks(self) -> list[bytes]:
        """The ``PoseResponse`` JSON document in pieces (:func:`document_chunks`)."""
        return document_chunks(self.head(), encode_frames(self.frames))

    def to_document(self) -> dict[str, Any]:
        """The same document as plain JSON values (exports and renders read it), built frame by frame."""
        document = self.head().model_dump(mode="json")
        document["frames"] = [Frame.of(r).model_dump(mode="json") for r in self.frames]
        return document
