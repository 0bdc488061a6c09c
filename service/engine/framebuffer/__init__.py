"""Per-stream frame storage for temporal windows: the interface, in-memory and Redis implementations."""

from service.engine.framebuffer.base import (
    AppendStatus,
    Emission,
    FrameBuffer,
    FrameRecord,
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
    "StreamMeta",
    "StreamState",
    "TrackerView",
    "decode_record",
    "encode_record",
]
