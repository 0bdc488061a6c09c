"""The client commands given input they cannot use: one line naming it and a non-zero exit (2), never a traceback (the
gateway is never reached: none listens at the addresses given); and what ``--max-frames`` leaves out is not decoded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cli import build_parser, main
from service.client import stream_cli
from service.client.sources import SourceFrame, clip_frames, write_synthetic_clip


def test_a_clip_that_is_not_a_video_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = tmp_path / "notes.mp4"
    clip.write_bytes(b"these are notes, not a video")
    assert main(["stream", str(clip), "--grpc", "127.0.0.1:1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pose3d stream: error: ")
    assert f"{clip}: not a video that can be decoded" in err


@pytest.mark.parametrize("boxes", ["[[1, 2", "[1, 2, 3, 4]", '[["a", 2, 3, 4]]', "[[1, 2, 3]]", "{}"])
@pytest.mark.parametrize("transport", [["--url", "http://127.0.0.1:1"], ["--grpc", "127.0.0.1:1"]])
def test_boxes_that_are_not_a_list_of_boxes_are_a_usage_error(
    boxes: str, transport: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "x.jpg"
    image.write_bytes(b"\xff\xd8\xff" + b"\0" * 32)
    with pytest.raises(SystemExit) as usage:
        main(["estimate", str(image), "--boxes", boxes, *transport])
    assert usage.value.code == 2
    assert "argument --boxes: not " in capsys.readouterr().err


def test_max_frames_stops_decoding_the_clip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pose3d stream long.mp4 --max-frames 2`` ends its source after frame 1: it used to decode the rest of the
    clip (all of it, frame by frame, before the stream could half-close) only to drop every frame."""
    clip = write_synthetic_clip(tmp_path / "c.mp4", 12, 32, 32)
    decoded: list[int] = []

    def counted(path: Path) -> Iterator[SourceFrame]:
        for frame in clip_frames(path):
            decoded.append(frame.index)
            yield frame

    monkeypatch.setattr(stream_cli, "clip_frames", counted)
    argv = ["stream", str(clip), "--max-frames", "2"]
    frames, count, _ = stream_cli._source(build_parser(argv).parse_args(argv), tmp_path)
    assert [f.index for f in frames] == [0, 1]
    assert count == 2
    assert decoded == [0, 1]


@pytest.mark.parametrize(
    "flags",
    [
        ["estimate", "IMAGE", "--max-people", "-1", "--grpc", "127.0.0.1:1"],
        ["estimate", "IMAGE", "--max-people", str(2**32), "--grpc", "127.0.0.1:1"],
        ["estimate", "IMAGE", "--every-nth", "-1", "--grpc", "127.0.0.1:1"],
        ["estimate", "IMAGE", "--every-nth", "0", "--url", "http://127.0.0.1:1"],
        ["stream", "--synthetic", "3", "--max-people", "-1", "--grpc", "127.0.0.1:1"],
        ["stream", "--synthetic", "3", "--width", "0", "--grpc", "127.0.0.1:1"],
        ["stream", "--synthetic", "-3", "--grpc", "127.0.0.1:1"],
        ["stream", "--synthetic", "3", "--fps", "0", "--grpc", "127.0.0.1:1"],
    ],
)
def test_counts_out_of_range_are_a_usage_error(
    flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "x.jpg"
    image.write_bytes(b"\xff\xd8\xff" + b"\0" * 32)
    with pytest.raises(SystemExit) as usage:
        main([str(image) if f == "IMAGE" else f for f in flags])
    assert usage.value.code == 2
    assert "is not a whole number from 1 to 4294967295" in capsys.readouterr().err
