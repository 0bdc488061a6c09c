"""The engine's clip decoding: encoded container bytes → frames, in whichever process runs the engine (the
gateway only probes a clip's header with a :class:`ClipReader`). :class:`ClipDecoder` decodes ahead on its own
thread; :func:`positioned` cuts any source into the chunks a named stream is fed with.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Final

from service.config import LimitSettings
from service.engine.types import ByteImage, ClipLimits, EncodedClip, Frame, ImageFrame, Source
from service.errors import DecodeFailed, PayloadTooLarge
from service.metrics import Metrics
from service.render.matroska import ends_inside
from service.render.video import upright_rgb, video_stream

if TYPE_CHECKING:
    import av

DEMUXERS: Final = {"mp4": "mov", "mov": "mov", "webm": "matroska", "avi": "avi"}
"""The FFmpeg demuxer forced for each sniffed clip kind (never auto-probed from client data)."""
UPLOAD_DEMUX_OPTIONS: Final = {"protocol_whitelist": "pipe"}
"""FFmpeg options for demuxing client data: no nested open may use a protocol (``file``, ``http``, …), so a
crafted playlist or reference inside an upload can name no file or URL (FFmpeg: "Protocol 'file' not on
whitelist"). The upload itself is read through PyAV's own I/O, which no protocol governs."""
CUT_SHORT: Final = "the clip is cut short: its data ends inside a frame (an incomplete upload or copy?); send it whole"
"""DecodeFailed's detail for a clip whose file ends before its data does."""
DECODE_AHEAD: Final = 2
"""Decoded frames a :class:`ClipDecoder` keeps ready beyond those its consumer has taken."""


Limits = ClipLimits | LimitSettings
"""What a frame or clip is checked against: the gateway's settings, or the limits a clip travels with."""


def check_frame_size(width: int, height: int, limits: Limits, what: str = "image") -> None:
    """Raise PayloadTooLarge (413) past the pixel / side limits, DecodeFailed (422) for empty sizes."""
    if width <= 0 or height <= 0:
        raise DecodeFailed(f"{what} has an empty size {width}x{height}")
    if max(width, height) > limits.max_frame_side:
        raise PayloadTooLarge(f"{what} is {width}x{height}; the longest side may be at most {limits.max_frame_side}")
    if width * height > limits.max_image_pixels:
        raise PayloadTooLarge(
            f"{what} is {width}x{height} = {width * height} pixels; at most {limits.max_image_pixels} are accepted"
        )


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded clip frame: ``index`` counts decoded frames of the source from 0 (before
    subsampling); ``timestamp_s`` is the container's presentation time; ``image`` ``(H, W, 3) uint8`` RGB."""

    index: int
    timestamp_s: float | None
    image: ByteImage


@dataclass(frozen=True)
class ClipInfo:
    """What the container header says (any of it may be unknown); ``kind`` the container (``mp4`` ...)."""

    kind: str
    width: int
    height: int
    fps: float | None
    duration_s: float | None
    frame_count: int | None


def _clip_failed(exc: Exception) -> DecodeFailed:
    return DecodeFailed(f"the clip could not be decoded: {exc}")


class ClipReader:
    """Streams a clip's frames from a seekable file object with PyAV, one decoded frame at a time.

    Never holds more than the decoder's own few frames: memory does not grow with clip length.
    Limits (frame size, duration, frame count) are checked from the header first, then again while
    decoding, since headers can lie. Use as a context manager; iteration is blocking (run it in a thread).
    """

    def __init__(self, file: BinaryIO, kind: str, limits: Limits, every_nth: int = 1) -> None:
        import av

        if every_nth < 1:
            raise ValueError("every_nth must be >= 1")
        if kind not in DEMUXERS:
            raise ValueError(f"{kind} is not a clip container ({', '.join(DEMUXERS)})")
        self._limits = limits
        self._every_nth = every_nth
        self._file, self._matroska = file, DEMUXERS[kind] == "matroska"
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._container = av.open(
                file, mode="r", format=DEMUXERS[kind], options=dict(UPLOAD_DEMUX_OPTIONS), metadata_errors="ignore"
            )
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise _clip_failed(exc) from exc
        try:
            self.info = self._probe(str(kind))
        except BaseException:
            self.close()
            raise

    def _probe(self, kind: str) -> ClipInfo:
        stream = video_stream(self._container)
        if stream is None:
            raise DecodeFailed("the clip has no video stream")
        if stream.codec_context is None:
            raise DecodeFailed("the clip's video codec is unknown or unsupported")
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        self._stream = stream
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        if width and height:
            check_frame_size(width, height, self._limits, "clip frame")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        duration_s: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:  # e.g. Matroska: the end time, counted from the start time
            duration_s = max(0, self._container.duration - (self._container.start_time or 0)) / 1_000_000
        frame_count = int(stream.frames) if stream.frames else None
        info = ClipInfo(kind, width, height, fps, duration_s, frame_count)
        self._check_extent(duration_s or 0.0, 0 if frame_count is None else -(-frame_count // self._every_nth))
        return info

    def _check_extent(self, seconds: float, frames_kept: int) -> None:
        if seconds > self._limits.max_clip_seconds:
            raise PayloadTooLarge(f"clip lasts {seconds:.1f} s; at most {self._limits.max_clip_seconds:g} s accepted")
        if frames_kept > self._limits.max_clip_frames:
            raise PayloadTooLarge(
                f"clip has more than {self._limits.max_clip_frames} frames to process"
                f" (every_nth={self._every_nth}); raise every_nth or cut the clip"
            )

    def frames(self) -> Iterator[DecodedFrame]:
        """Yield every ``every_nth`` decoded frame in decoding order. Each step may run on any thread
        (e.g. ``asyncio.to_thread(next, it)``); :meth:`close` waits for a step in progress, so closing
        from another thread after a cancelled step is safe."""
        import av

        decoder = enumerate(self._decode())
        index, fps = -1, self.info.fps
        first_timestamp: float | None = None  # clips cut from a recording keep its timestamps: measure from here
        while True:
            with self._lock:
                if self._closed:
                    return
                try:
                    index, frame = next(decoder, (index, None))
                    if frame is None:
                        break
                    if index % self._every_nth:
                        continue
                    timestamp = frame.time
                    if timestamp is None and fps:
                        timestamp = index / fps
                    if timestamp is not None and first_timestamp is None:
                        first_timestamp = float(timestamp)
                    elapsed = 0.0 if timestamp is None else float(timestamp) - (first_timestamp or 0.0)
                    self._check_extent(elapsed, index // self._every_nth + 1)  # frames kept so far
                    check_frame_size(int(frame.width), int(frame.height), self._limits, "clip frame")
                    image = upright_rgb(frame)
                except (av.FFmpegError, ValueError, OSError) as exc:
                    raise _clip_failed(exc) from exc
            yield DecodedFrame(index=index, timestamp_s=None if timestamp is None else float(timestamp), image=image)
        if index < 0:
            raise DecodeFailed("the clip has no decodable video frame")

    def _decode(self) -> Iterator[av.VideoFrame]:
        """The video stream's frames, as ``container.decode(stream)`` gives them; DecodeFailed at a packet the demuxer
        read short (MP4, MOV, AVI: the file is cut inside that frame), which it ends after as at the clip's end, or
        at the end of a Matroska/WebM file that ends inside an element (its demuxer drops the cut frame unsaid)."""
        for packet in self._container.demux(self._stream):
            if packet.is_corrupt:
                raise DecodeFailed(CUT_SHORT)
            yield from packet.decode()
        if self._matroska and ends_inside(self._file):
            raise DecodeFailed(CUT_SHORT)

    def close(self) -> None:
        """Release the decoder (waits for a decoding step running on another thread)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._container.close()

    def __enter__(self) -> ClipReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_Decoded = tuple[DecodedFrame | None, float] | Exception
"""What the decoding thread hands over: a frame (``None`` at the end) and the seconds it took, or an error."""


class ClipDecoder:
    """Decodes ``reader`` on its own thread into an asyncio queue, at most ``ahead`` frames ahead of the
    consumer (frames waiting in the queue plus the one being decoded). :meth:`aclose` stops the thread,
    waits for it and closes the reader; call it whatever happens (or use :func:`decoded_clip`)."""

    def __init__(self, reader: ClipReader, ahead: int, metrics: Metrics | None) -> None:
        self._reader = reader
        self._metrics = metrics
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[_Decoded] = asyncio.Queue()
        self._room = threading.Semaphore(ahead)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._decode, name="pose3d-clip-decode", daemon=True)
        self.decode_ms = 0.0
        self.frames_decoded = 0
        self._thread.start()

    def _decode(self) -> None:
        """On the thread: decode a frame whenever the queue has room, until the end, an error, or stop."""
        frames: Iterator[DecodedFrame] = self._reader.frames()
        try:
            while True:
                self._room.acquire()
                if self._stopped.is_set():
                    return
                started = time.perf_counter()
                decoded = next(frames, None)
                self._hand_over((decoded, time.perf_counter() - started))
                if decoded is None:
                    return
                del decoded
        except Exception as exc:  # handed to the consumer, which raises it
            self._hand_over(exc)

    def _hand_over(self, item: _Decoded) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def decoded(self) -> AsyncIterator[DecodedFrame]:
        """The decoded frames in order (raises the decoder's error, e.g. DecodeFailed or PayloadTooLarge)."""
        while True:
            item = await self._queue.get()
            self._room.release()
            if isinstance(item, Exception):
                raise item
            decoded, seconds = item
            if decoded is None:
                return
            self.decode_ms += seconds * 1000.0
            self.frames_decoded += 1
            if self._metrics is not None:
                self._metrics.stage_duration.labels("decode").observe(seconds)
            yield decoded

    async def frames(self, start: int | None = None) -> AsyncIterator[Frame]:
        """The decoded frames as engine frames at their source frame index, or (``start`` given) those from
        position ``start`` on at their positions 0, 1, 2, ..."""
        position = -1
        async for decoded in self.decoded():
            position += 1
            if start is None or position >= start:
                index = decoded.index if start is None else position
                yield ImageFrame(image=decoded.image, frame_index=index, timestamp_s=decoded.timestamp_s)
            del decoded

    async def aclose(self) -> None:
        self._stopped.set()
        self._room.release()  # wakes the thread if it waits for room
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._reader.close)


@contextlib.asynccontextmanager
async def decoded_clip(
    clip: EncodedClip, metrics: Metrics | None, ahead: int = DECODE_AHEAD
) -> AsyncIterator[ClipDecoder]:
    """A :class:`ClipDecoder` over ``clip`` (its reader opened off the event loop), closed on exit."""
    reader = await asyncio.to_thread(ClipReader, io.BytesIO(clip.data), clip.container, clip.limits, clip.every_nth)
    decoder = ClipDecoder(reader, ahead, metrics)
    try:
        yield decoder
    finally:
        await decoder.aclose()


@contextlib.asynccontextmanager
async def clip_frames(
    frames: Source, metrics: Metrics | None, chunk_frames: int | None = None
) -> AsyncIterator[tuple[AsyncIterator[Frame], ClipDecoder | None]]:
    """A request's frames as an async source, and the decoder (for its timing) when ``frames`` is an encoded clip
    decoded here: at their source frame index, or for a stream (``chunk_frames`` given, decoded that many frames
    ahead) its kept frames from ``start`` on at positions 0, 1, 2, ... Frames given as a sequence or an async
    source keep their own ``frame_index`` (decoder ``None``)."""
    if not isinstance(frames, EncodedClip):
        yield (async_frames(frames) if isinstance(frames, Sequence) else aiter(frames)), None
        return
    ahead = DECODE_AHEAD + (chunk_frames or 0)
    async with decoded_clip(frames, metrics, ahead) as decoder:
        yield decoder.frames(None if chunk_frames is None else frames.start), decoder


@contextlib.asynccontextmanager
async def positioned(
    frames: Source, metrics: Metrics | None, chunk_frames: int
) -> AsyncIterator[tuple[AsyncIterator[tuple[list[Frame], int]], ClipDecoder | None]]:
    """:func:`clip_frames` for a stream, in chunks of ``chunk_frames`` with the number of source frames taken so far
    (the last chunk, possibly empty, counts them all)."""
    skipped = frames.start if isinstance(frames, EncodedClip) else 0
    async with clip_frames(frames, metrics, chunk_frames) as (source, decoder):
        yield _chunks(source, chunk_frames, skipped), decoder


async def async_frames(frames: Iterable[Frame]) -> AsyncIterator[Frame]:
    """``frames`` as an async source."""
    for frame in frames:
        yield frame


async def _chunks(frames: AsyncIterator[Frame], size: int, skipped: int) -> AsyncIterator[tuple[list[Frame], int]]:
    chunk: list[Frame] = []
    taken = skipped
    async for frame in frames:
        chunk.append(frame)
        taken += 1
        del frame
        if len(chunk) >= size:
            yield chunk, taken
            chunk = []
    yield chunk, taken
