"""Reading source clips and writing H.264 MP4 with PyAV."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import av

Image = npt.NDArray[np.uint8]


def video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """The clip's video track, which every decoder of clips here reads (the engine, the stream client, renders):
    of the video streams that are not an attached picture (cover art), the longest by what the container says
    (:func:`stated_seconds`), the first of equals; None when there is none. A one-frame still ahead of the
    video (a cover or title track) is not the clip."""
    import av

    tracks = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    return max(tracks, key=stated_seconds, default=None)  # max keeps the first of equals


def stated_seconds(stream: av.VideoStream) -> float:
    """How long ``stream`` lasts by its container, in seconds: its duration, else its Matroska ``DURATION`` tag
    (``HH:MM:SS.nnnnnnnnn``, as FFmpeg and mkvmerge write it), else its frame count over its rate; 0.0 unknown."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    hours, _, rest = stream.metadata.get("DURATION", "").partition(":")
    minutes, _, seconds = rest.partition(":")
    try:
        return int(hours) * 3600.0 + int(minutes) * 60.0 + float(seconds)
    except ValueError:
        pass
    rate = stream.average_rate or stream.guessed_rate
    return float(stream.frames / rate) if stream.frames and rate else 0.0


def upright_rgb(frame: Any) -> Image:
    """A decoded PyAV video frame as it is shown: ``(H, W, 3)`` uint8 RGB turned by its display matrix
    (``frame.rotation``, degrees counterclockwise: a phone's portrait clip is stored sideways), as players and
    ffmpeg show it. Every decoder of clips here (the engine, the stream client, renders) reads frames through this."""
    image = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
    turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


CODEC_PREFERENCE = ("libx264", "h264", "mpeg4")
"""H.264 when this PyAV build has an encoder for it (its wheels ship libx264), else MPEG-4 part 2."""


def video_codec() -> str:
    import av

    available = av.codecs_available
    for name in CODEC_PREFERENCE:
        if name in available:
            try:
                av.codec.Codec(name, "w")
            except Exception:  # listed but not an encoder in this build
                continue
            return name
    raise RuntimeError("this PyAV build has no H.264 or MPEG-4 encoder")


def clip_frames(source: str | Path | BinaryIO, options: dict[str, str] | None = None) -> Iterator[tuple[int, Image]]:
    """``(index, (H, W, 3) uint8 RGB)`` for every frame in decoding order (the index the service reports);
    ``options``: FFmpeg's (uploads: ``service.engine.clips.UPLOAD_DEMUX_OPTIONS``)."""
    import av

    with av.open(source if not isinstance(source, Path) else str(source), mode="r", options=options or {}) as container:
        stream = video_stream(container)
        if stream is None:
            raise ValueError(f"{source} has no video stream")
        for index, frame in enumerate(container.decode(stream)):
            yield index, upright_rgb(frame)


@dataclass
class Mp4Writer:
    """Encodes ``(H, W, 3) uint8 RGB`` frames (every frame the same even size) to ``target`` at ``fps``."""

    target: str | Path | BinaryIO
    fps: float
    codec: str = ""
    frames: int = 0

    def __post_init__(self) -> None:
        import av

        self.codec = self.codec or video_codec()
        target = str(self.target) if isinstance(self.target, Path) else self.target
        self._container: Any = av.open(target, mode="w", format="mp4")
        self._stream: Any = None

    def write(self, image: Image) -> None:
        import av

        if self._stream is None:
            from fractions import Fraction

            rate = Fraction(self.fps).limit_denominator(1001)
            self._stream = self._container.add_stream(self.codec, rate=rate)
            self._stream.width, self._stream.height = int(image.shape[1]), int(image.shape[0])
            self._stream.pix_fmt = "yuv420p"
            if self.codec in ("libx264", "h264"):
                self._stream.options = {"crf": "23", "preset": "veryfast"}
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
