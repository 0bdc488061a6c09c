"""The streaming client's clip sources given files PyAV opens but that hold no picture it can send (no video stream,
or one no decoder reads): DecodeFailed, the gateway's error for the same clip, and from ``pose3d stream`` one line
naming the file and exit 2 before any connection, never a traceback (the gateway is never reached)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from service.cli import main
from service.client.sources import clip_frame_count, clip_frames
from service.errors import DecodeFailed


def write_audio_only(path: Path) -> Path:
    """An MP4 with one AAC audio stream and no video stream (a voice memo, a podcast)."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        assert isinstance(stream, av.AudioStream)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_a_file_without_a_video_stream_is_a_decode_failure(tmp_path: Path) -> None:
    audio = write_audio_only(tmp_path / "memo.mp4")
    with pytest.raises(DecodeFailed, match="no video stream"):
        clip_frame_count(audio)
    with pytest.raises(DecodeFailed, match="no video stream"):
        next(clip_frames(audio))


def test_stream_of_a_file_without_video_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = write_audio_only(tmp_path / "memo.mp4")
    assert main(["stream", str(audio), "--grpc", "127.0.0.1:1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pose3d stream: error: ")
    assert f"{audio}: the file has no video stream" in err


def write_unknown_codec(path: Path) -> Path:
    """An AVI whose one video stream names a codec no decoder knows (its FourCC replaced: PyAV gives it no codec
    context), as the gateway's fuzz test found."""
    with av.open(str(path), mode="w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=25)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    assert b"FMP4" in data
    path.write_bytes(data.replace(b"FMP4", b"QQQQ"))
    return path


def test_a_video_stream_without_a_decoder_is_a_decode_failure(tmp_path: Path) -> None:
    clip = write_unknown_codec(tmp_path / "odd.avi")
    with pytest.raises(DecodeFailed, match="codec"):
        clip_frame_count(clip)
    with pytest.raises(DecodeFailed, match="codec"):
        next(clip_frames(clip))


def test_stream_of_a_video_without_a_decoder_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_unknown_codec(tmp_path / "odd.avi")
    assert main(["stream", str(clip), "--grpc", "127.0.0.1:1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pose3d stream: error: ")
    assert f"{clip}: the video's codec is unknown or unsupported" in err


@pytest.mark.parametrize(
    "size", [["--width", "8192"], ["--height", "9000"], ["--width", "100000", "--height", "100000"]]
)
def test_a_synthetic_clip_past_the_encoders_sides_is_one_line_not_a_traceback(
    size: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stream", "--synthetic", "3", *size, "--grpc", "127.0.0.1:1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pose3d stream: error: a synthetic clip is at most 8191 pixels a side")


def test_a_synthetic_clip_at_the_encoders_longest_side_is_written(tmp_path: Path) -> None:
    from service.client.sources import write_synthetic_clip

    clip = write_synthetic_clip(tmp_path / "tall.mp4", 1, 16, 8191)
    assert next(clip_frames(clip)).image.shape == (8191, 16, 3)
