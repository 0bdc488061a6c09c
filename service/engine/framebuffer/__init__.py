"""Per-stream frame storage for temporal windows: the interface, in-memory and Redis implementations."""

from service.engine.framebuffer.base import (
    AppendStatus,
    Emission,
    FrameBuffer,
    FrameRecord,
    SmoothingSnapshot,
    StreamMeta,
    StreamState,
    TrackerView,
    decode_record,
    encode_record,
)
from service.engine.framebuffer.memory import MemoryFrameBuffer

__all__ = [
    "AppendStatus",
    "Emission",
    "FrameBuffer",
    "FrameRecord",
    "MemoryFrameBuffer",
    "SmoothingSnapshot",
    "StreamMeta",
    "StreamState",
    "TrackerView",
    "decode_record",
    "encode_record",
]
