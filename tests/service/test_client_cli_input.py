"""The client commands given input they cannot use: one line naming it and a non-zero exit (2), never a traceback (the
gateway is never reached: none listens at the addresses given)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli import main


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
